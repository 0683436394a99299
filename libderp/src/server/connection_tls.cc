// Connection<TlsStream>: DERP and the HTTP routes over TLS.
#include <boost/asio/post.hpp>

#include "server/connection.h"

namespace derp::server {

void start_tls_connection(boost::asio::ip::tcp::socket socket,
                          std::shared_ptr<boost::asio::ssl::context> ctx,
                          const ConnectionShared& shared) {
  auto conn = std::make_shared<Connection<TlsStream>>(TlsStream(std::move(socket), *ctx),
                                                      shared.relay, shared.stats, shared.pool,
                                                      shared.opts, shared.server_public);
  conn->hold(std::move(ctx));
  boost::asio::post(conn->executor_for_start(), [conn] { conn->start(); });
}

}  // namespace derp::server
