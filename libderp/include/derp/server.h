// The relay: DERP over HTTP on a listening socket, with derper's routing and endpoints.
// PROTOCOL.md §4 (behaviour), §6 (HTTP). Asio stays behind the pimpl.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "derp/key.h"
#include "derp/result.h"

namespace derp {

struct ServerOptions {
  NodePrivate private_key;                   // the relay's identity (required)
  std::string listen_addr = "127.0.0.1:3340";  // host:port; port 0 picks an ephemeral port
  int threads = 0;                           // event loops; 0 = one per core
  size_t per_client_queue_depth = 32;        // per queue (data and disco), as derper
  std::chrono::milliseconds write_timeout{2000};      // per flush; 0 = none
  std::chrono::milliseconds handshake_timeout{10000};  // per handshake step and HTTP head
  std::chrono::milliseconds keep_alive{60000};         // KeepAlive period (+ up to 5 s jitter)
  MeshKey mesh_key;                          // zero = no mesh peers
  // Relays to mesh with (derper's --mesh-with; needs mesh_key): "host:port" (plain HTTP),
  // "host" (https on 443), "host/dialhost", or a full http(s):// URL. An entry naming this
  // relay's own listen address is skipped. See docs/MESH.md.
  std::vector<std::string> mesh_with;
  // One line per event worth knowing (start, refused client...). Called from relay threads.
  std::function<void(std::string_view)> log;
  bool verbose = false;                      // also log per-connection lines
  // STUN server (PROTOCOL.md §9.1–9.2) on UDP, bound to listen_addr's host. Off by default in
  // the library (derp-serve turns it on, as derper does); stun_port 0 picks an ephemeral port.
  bool stun = false;
  uint16_t stun_port = 3478;
  // host:port of a separate plain-HTTP listener serving GET /metrics (Prometheus text, the
  // same as /debug/varz) to anyone who can reach it; empty = none. Port 0 = ephemeral.
  std::string metrics_addr;
};

class Server {
 public:
  // Binds the listener (and the STUN socket when asked) and starts the event loops. Errors:
  // kUsage (bad address), kConnect (bind failed, e.g. address in use).
  static Result<std::unique_ptr<Server>> start(ServerOptions options);
  ~Server();  // stop() and join

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound address, e.g. "127.0.0.1:40123", and its port.
  std::string local_address() const;
  uint16_t port() const;
  NodePublic public_key() const;
  // The bound STUN UDP port, or 0 when STUN is off.
  uint16_t stun_port() const;
  // The bound metrics listener address, e.g. "127.0.0.1:40124", or "" when there is none.
  std::string metrics_address() const;

  // Counters and gauges under derper's expvar names (PROTOCOL.md §6.6), e.g. "accepts",
  // "packets_received", "gauge_current_connections", "packets_dropped_reason_unknown_dest".
  std::map<std::string, int64_t> counters() const;

  // Closes the listener and every connection, then joins the loops. Idempotent.
  void stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace derp
