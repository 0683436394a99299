#include "support/client_transport.h"

#include <stdlib.h>

#include <filesystem>
#include <thread>

namespace derp::test {

using namespace std::chrono_literals;

bool transport_uses_tls(ClientTransport t) {
  return t == ClientTransport::kTls || t == ClientTransport::kWebSocketTls;
}

bool transport_uses_websocket(ClientTransport t) {
  return t == ClientTransport::kWebSocket || t == ClientTransport::kWebSocketTls;
}

std::string transport_label(ClientTransport t) {
  switch (t) {
    case ClientTransport::kPlain:
      return "Plain";
    case ClientTransport::kTls:
      return "Tls";
    case ClientTransport::kWebSocket:
      return "WebSocket";
    case ClientTransport::kWebSocketTls:
      return "WebSocketTls";
  }
  return "?";
}

std::string transport_report_name(ClientTransport t) {
  switch (t) {
    case ClientTransport::kPlain:
      return "tcp";
    case ClientTransport::kTls:
      return "tls";
    case ClientTransport::kWebSocket:
      return "websocket";
    case ClientTransport::kWebSocketTls:
      return "websocket+tls";
  }
  return "?";
}

void use_transport(ClientOptions& o, ClientTransport t, uint16_t port) {
  o.server_url = std::string(transport_uses_tls(t) ? "https" : "http") +
                 "://127.0.0.1:" + std::to_string(port) + "/derp";
  o.websocket = transport_uses_websocket(t);
}

TransportRelay::TransportRelay(ClientTransport t, MeshKey mesh_key)
    : transport_(t), mesh_key_(mesh_key), key_(NodePrivate::generate()) {}

std::unique_ptr<TransportRelay> TransportRelay::start(ClientTransport t, MeshKey mesh_key) {
  std::unique_ptr<TransportRelay> r(new TransportRelay(t, mesh_key));
  if (transport_uses_tls(t)) {
    char tmpl[] = "/tmp/derp-transport-relay-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
      return nullptr;
    }
    r->dir_ = tmpl;
  }
  if (!r->launch("127.0.0.1:0")) return nullptr;
  r->port_ = r->server_->port();
  r->cert_pin_ = r->server_->cert_pin();
  return r;
}

TransportRelay::~TransportRelay() {
  server_.reset();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

bool TransportRelay::launch(const std::string& addr) {
  ServerOptions o;
  o.private_key = key_;
  o.listen_addr = addr;
  o.threads = 1;
  o.mesh_key = mesh_key_;
  if (transport_uses_tls(transport_)) {
    // The relay generates a self-signed certificate for 127.0.0.1 and saves it in dir_, so a
    // restart serves the same one.
    o.cert_mode = "manual";
    o.cert_dir = dir_;
    o.hostname = "127.0.0.1";
  }
  auto s = Server::start(std::move(o));
  if (!s.ok()) {
    ADD_FAILURE() << "relay on " << addr << ": " << s.error().message;
    return false;
  }
  server_ = std::move(*s);
  return true;
}

std::string TransportRelay::url() const {
  return std::string(transport_uses_tls(transport_) ? "https" : "http") +
         "://127.0.0.1:" + std::to_string(port_) + "/derp";
}

void TransportRelay::stop() {
  if (server_) server_->stop();
}

bool TransportRelay::restart() {
  server_.reset();
  return launch("127.0.0.1:" + std::to_string(port_));
}

ClientOptions TransportRelay::client_options(NodePrivate key) const {
  ClientOptions o;
  o.private_key = key;
  use_transport(o, transport_, port_);
  if (transport_uses_tls(transport_)) o.cert_name = cert_pin_;
  o.server_key = key_.public_key();
  o.connect_timeout = 10s;
  return o;
}

std::unique_ptr<Client> TransportRelay::make_client(ClientOptions o) {
  auto c = Client::create(std::move(o));
  if (!c.ok()) {
    ADD_FAILURE() << "Client::create: " << c.error().message;
    return nullptr;
  }
  return std::move(*c);
}

DERPRegion TransportRelay::region() const {
  DERPNode n;
  n.name = "900a";
  n.region_id = 900;
  n.host_name = "127.0.0.1";  // the generated certificate is for this IP
  n.ipv4 = "127.0.0.1";
  n.ipv6 = "none";
  n.derp_port = port_;
  n.cert_name = cert_pin_;
  DERPRegion r;
  r.region_id = 900;
  r.region_code = "test";
  r.nodes.push_back(n);
  return r;
}

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::yield();
  }
  return cond();
}

}  // namespace derp::test
