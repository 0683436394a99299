// derper's STUN server (PROTOCOL.md §9.1–9.2): one UDP socket on one of the relay's loops,
// answering Tailscale binding requests with the sender's address and ignoring everything else.
#pragma once

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <cstdint>

#include "derp/result.h"
#include "derp/stun.h"
#include "server/stats.h"

namespace derp::server {

class StunServer {
 public:
  StunServer(boost::asio::io_context& io, Stats& stats);

  // Opens and binds the socket (call before the loop runs). kConnect when the bind fails.
  Result<void> listen(const boost::asio::ip::udp::endpoint& ep);
  // Starts receiving; call on the socket's loop (or before it runs).
  void start();
  // Closes the socket; call on the socket's loop (or after it stopped).
  void close();

  boost::asio::ip::udp::endpoint local_endpoint() const { return local_; }

 private:
  void receive_next();
  void on_receive(boost::system::error_code ec, size_t n);

  boost::asio::ip::udp::socket socket_;
  Stats& stats_;
  boost::asio::ip::udp::endpoint local_;
  boost::asio::ip::udp::endpoint sender_;
  // Fixed buffers: the per-request path never allocates. 64 KiB holds any datagram, so an
  // oversized one is read whole (and rejected) rather than truncated into something valid.
  std::array<uint8_t, 64 * 1024> in_{};
  std::array<uint8_t, stun::kMaxResponseLen> out_{};
};

}  // namespace derp::server
