// Connection<tcp::socket>: plain-TCP DERP, the HTTP routes, and derper's port-80 handler.
#include <boost/asio/post.hpp>

#include "server/connection.h"

namespace derp::server {

void start_tcp_connection(boost::asio::ip::tcp::socket socket, const ConnectionShared& shared,
                          const std::string* port80_host, uint16_t https_port) {
  auto conn = std::make_shared<Connection<boost::asio::ip::tcp::socket>>(
      std::move(socket), shared.relay, shared.stats, shared.pool, shared.opts,
      shared.server_public);
  if (port80_host) conn->set_port80(*port80_host, https_port);
  boost::asio::post(conn->executor_for_start(), [conn] { conn->start(); });
}

}  // namespace derp::server
