// The --raw ceiling: a plain user-space TCP forwarder on loopback, built from the same Asio
// socket code as the load engine. Each connection first sends 8 bytes: pair index (uint32, host
// order) and role (1 = receiver, 0 = sender); once both ends of a pair are there, every byte the
// sender writes is copied to the receiver (read_some into one buffer, one write of what was read).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <thread>

#include "derp/result.h"

namespace derp::bench {

class RawForwarder {
 public:
  // Listens on 127.0.0.1:0 and runs one event loop on its own thread (one thread keeps the
  // shutdown free of races; with the generator on another core it is what a 2-core box has).
  static Result<std::unique_ptr<RawForwarder>> start();
  ~RawForwarder();  // closes everything and joins

  boost::asio::ip::tcp::endpoint endpoint() const { return endpoint_; }

  struct State;

 private:
  RawForwarder() = default;
  std::shared_ptr<State> state_;
  boost::asio::ip::tcp::endpoint endpoint_;
  std::thread thread_;
};

}  // namespace derp::bench
