// One relay per client transport for derp::Client's integration tests: the in-process relay
// (derp::Server, what derp-serve runs) on 127.0.0.1 with an ephemeral port, serving plain HTTP
// or TLS (its generated self-signed 127.0.0.1 certificate, pinned with sha256-raw:), and client
// options that reach it over TCP, TLS, WebSocket or WebSocket over TLS. Also the waits the
// client tests share (next message of a type, a condition with a deadline).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "derp/client.h"
#include "derp/derp_map.h"
#include "derp/key.h"
#include "derp/server.h"

namespace derp::test {

enum class ClientTransport { kPlain, kTls, kWebSocket, kWebSocketTls };

inline constexpr ClientTransport kAllClientTransports[] = {
    ClientTransport::kPlain, ClientTransport::kTls, ClientTransport::kWebSocket,
    ClientTransport::kWebSocketTls};

bool transport_uses_tls(ClientTransport t);
bool transport_uses_websocket(ClientTransport t);
// "Plain", "Tls", "WebSocket", "WebSocketTls" (gtest parameter names).
std::string transport_label(ClientTransport t);
// What ConnectReport::transport says for it: "tcp", "tls", "websocket", "websocket+tls".
std::string transport_report_name(ClientTransport t);

// Points `o` at 127.0.0.1:port over `t` (URL scheme and the WebSocket flag; TLS verification
// is the caller's business). For listeners that are not relays.
void use_transport(ClientOptions& o, ClientTransport t, uint16_t port);

class TransportRelay {
 public:
  // A relay serving `t` (mesh_key: zero = no mesh). nullptr and a test failure when it fails.
  static std::unique_ptr<TransportRelay> start(ClientTransport t, MeshKey mesh_key = {});
  ~TransportRelay();
  TransportRelay(const TransportRelay&) = delete;
  TransportRelay& operator=(const TransportRelay&) = delete;

  Server& server() { return *server_; }
  ClientTransport transport() const { return transport_; }
  NodePublic public_key() const { return key_.public_key(); }
  uint16_t port() const { return port_; }
  std::string url() const;  // http(s)://127.0.0.1:PORT/derp

  // Stops the relay: every client connection drops.
  void stop();
  // Starts it again on the same port with the same key and certificate. False (and a test
  // failure) when it cannot.
  bool restart();

  // A client of this relay: URL, certificate pin, WebSocket flag, relay key pin, 10 s connects.
  ClientOptions client_options(NodePrivate key = NodePrivate::generate()) const;
  // Client::create(o), or nullptr and a test failure.
  static std::unique_ptr<Client> make_client(ClientOptions o);
  std::unique_ptr<Client> client() const { return make_client(client_options()); }

  // A one-node region reaching this relay (IPv4 127.0.0.1, IPv6 "none", DERPPort, CertName pin).
  // Region clients of a plain relay need ClientOptions::region_plain_http.
  DERPRegion region() const;

 private:
  TransportRelay(ClientTransport t, MeshKey mesh_key);
  bool launch(const std::string& addr);

  ClientTransport transport_;
  MeshKey mesh_key_;
  NodePrivate key_;
  std::string dir_;  // certificate directory (TLS)
  uint16_t port_ = 0;
  std::string cert_pin_;
  std::unique_ptr<Server> server_;
};

// Polls `cond` with a short yield until it holds or `limit` passes.
bool wait_until(const std::function<bool()>& cond,
                std::chrono::milliseconds limit = std::chrono::milliseconds(10000));

// The next message of type T on c, skipping others; nullopt (with a test failure) when recv
// fails or 32 other messages come first. *generation gets the connection it arrived on.
template <typename T>
std::optional<T> next_message_of(Client& c, uint64_t* generation = nullptr,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  for (int i = 0; i < 32; ++i) {
    auto m = c.recv_detail(timeout);
    if (!m.ok()) {
      ADD_FAILURE() << "recv: " << m.error().message;
      return std::nullopt;
    }
    if (auto* v = std::get_if<T>(&m->message)) {
      if (generation) *generation = m->generation;
      return *v;
    }
  }
  ADD_FAILURE() << "no message of the wanted type";
  return std::nullopt;
}

}  // namespace derp::test
