// Starting a relay connection on an accepted socket, without seeing Connection<Stream>.
// Each stream type's Connection is instantiated in a translation unit of its own
// (connection_tcp.cc, connection_tls.cc, connection_ws_tcp.cc, connection_ws_tls.cc): the
// template is large, and one TU holding all four instantiations took three minutes to compile.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <string>

#include "derp/key.h"
#include "derp/server.h"

namespace boost::asio::ssl {
class context;
}

namespace derp::server {

class Relay;
class Stats;
class ChunkPool;

// What every connection of one relay shares; the relay outlives all of its connections.
struct ConnectionShared {
  Relay& relay;
  Stats& stats;
  ChunkPool& pool;
  const ServerOptions& opts;
  const NodePublic& server_public;
};

// Plain TCP (DERP, WebSocket and the HTTP routes). With `port80_host` set, the connection is
// derper's plain-HTTP port beside TLS instead: generate_204, /debug/ and a redirect to
// https://port80_host (the request's Host when empty) at `https_port`.
// Posts the start to the socket's executor.
void start_tcp_connection(boost::asio::ip::tcp::socket socket, const ConnectionShared& shared,
                          const std::string* port80_host = nullptr, uint16_t https_port = 443);

// TLS with the certificate context current at accept time (kept alive by the connection).
void start_tls_connection(boost::asio::ip::tcp::socket socket,
                          std::shared_ptr<boost::asio::ssl::context> ctx,
                          const ConnectionShared& shared);

}  // namespace derp::server
