#include "net/endpoint_text.h"
#include "server/stun_server.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>

namespace derp::server {

namespace asio = boost::asio;
using asio::ip::udp;

StunServer::StunServer(asio::io_context& io, Stats& stats) : socket_(io), stats_(stats) {}

Result<void> StunServer::listen(const udp::endpoint& ep) {
  boost::system::error_code ec;
  auto fail = [&] {
    return net::listen_error("stun listen", "udp " + net::endpoint_string(ep), ec);
  };
  socket_.open(ep.protocol(), ec);
  if (ec) return fail();
  socket_.bind(ep, ec);
  if (ec) return fail();
  // Replies are sent inline from the receive handler; a full send buffer drops the reply
  // (counted) instead of stalling the loop, as UDP would anyway.
  socket_.non_blocking(true, ec);
  if (ec) return fail();
  local_ = socket_.local_endpoint(ec);
  if (ec) return fail();
  return {};
}

void StunServer::start() { receive_next(); }

void StunServer::close() {
  boost::system::error_code ec;
  socket_.close(ec);
}

void StunServer::receive_next() {
  socket_.async_receive_from(asio::buffer(in_), sender_,
                             [this](boost::system::error_code ec, size_t n) { on_receive(ec, n); });
}

void StunServer::on_receive(boost::system::error_code ec, size_t n) {
  if (ec == asio::error::operation_aborted || !socket_.is_open()) return;
  if (ec) {
    // ICMP errors surface here on Linux (e.g. connection_refused after a reply to a closed
    // port); the socket itself is fine, so keep serving.
    stats_.add(Counter::kStunRequestsReadError);
    receive_next();
    return;
  }
  const std::span<const uint8_t> packet(in_.data(), n);
  // is_stun first, as derper does: it rejects most junk without building an error message.
  if (!stun::is_stun(packet)) {
    stats_.add(Counter::kStunRequestsNotStun);
    receive_next();
    return;
  }
  auto tx = stun::parse_binding_request(packet);
  if (!tx) {
    stats_.add(Counter::kStunRequestsNotStun);
    receive_next();
    return;
  }
  // The address as the socket reports it: a dual-stack socket reports an IPv4 sender as
  // ::ffff:a.b.c.d and derper then answers with family 02 and that mapped address.
  const auto addr = sender_.address();
  stun::Endpoint mapped;
  if (addr.is_v4()) {
    mapped = stun::Endpoint::v4(addr.to_v4().to_bytes(), sender_.port());
    stats_.add(Counter::kStunAddrFamilyIpv4);
  } else {
    mapped = stun::Endpoint::v6(addr.to_v6().to_bytes(), sender_.port());
    stats_.add(Counter::kStunAddrFamilyIpv6);
  }
  const size_t len = stun::encode_binding_response(out_, *tx, mapped);
  boost::system::error_code wec;
  socket_.send_to(asio::buffer(out_.data(), len), sender_, 0, wec);
  stats_.add(wec || len == 0 ? Counter::kStunRequestsWriteError : Counter::kStunRequestsSuccess);
  receive_next();
}

}  // namespace derp::server
