// Connection<websocket::stream<S>>: DERP over WebSocket (PROTOCOL.md §6.4), started by a TCP
// or TLS connection whose upgrade request asked for it. Included only by connection_ws_tcp.cc
// and connection_ws_tls.cc, which instantiate it for one lower stream each.
#pragma once

#include "server/connection.h"

namespace derp::server {

template <class Stream>
void start_websocket_connection(Stream stream, std::shared_ptr<void> held,
                                const ConnectionShared& shared, Request req, std::string remote,
                                const Presence& presence) {
  auto ws = std::make_shared<Connection<beast::websocket::stream<Stream>>>(
      beast::websocket::stream<Stream>(std::move(stream)), shared.relay, shared.stats,
      shared.pool, shared.opts, shared.server_public);
  ws->hold(std::move(held));
  ws->start_websocket(std::move(req), std::move(remote), presence);
}

}  // namespace derp::server
