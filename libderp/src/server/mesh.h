// Relay mesh (PROTOCOL.md §4.5, §5; derper's --mesh-with): one outgoing mesh link per peer
// relay. Each link is a derp::Client with the mesh key running the watch loop; what the peer
// reports present becomes a forwarder in the relay's table, so packets for keys connected over
// there leave as ForwardPacket on that link.
//
// Layering: the server uses only the public client API (derp/client.h, derp/watch.h), never
// client internals.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "derp/key.h"
#include "derp/result.h"
#include "derp/server.h"
#include "server/relay.h"
#include "server/stats.h"
#include "server/status.h"

namespace derp::server {

// One --mesh-with entry made into a URL to dial, as derper does: "host[:port]" →
// https://host[:port]/derp, "host[:port]/dialhost" → dial dialhost on that port, expect host's
// certificate; full http(s):// URLs are kept as written (http:// for plain-HTTP test relays).
struct MeshTarget {
  std::string entry;      // as written
  std::string url;        // what the client dials
  std::string cert_name;  // "" = the URL's host
};
Result<MeshTarget> parse_mesh_target(const std::string& entry);

class MeshLink;

class Mesh {
 public:
  // `self_addr` is the relay's bound "host:port": an entry naming it is skipped (derper skips
  // its own hostname); a peer answering with our own key is dropped by the watch loop.
  Mesh(const ServerOptions& opts, Relay& relay, Stats& stats, std::string self_addr);
  ~Mesh();  // stop()
  Mesh(const Mesh&) = delete;
  Mesh& operator=(const Mesh&) = delete;

  // Parses every entry (kUsage on a bad one) and starts the links.
  Result<void> start();
  // Stops every link and removes its forwarders. Idempotent.
  void stop();
  // Each running link's entry, URL and state, in --mesh-with order. Thread-safe.
  std::vector<MeshPeerStatus> status() const;

 private:
  const ServerOptions& opts_;
  Relay& relay_;
  Stats& stats_;
  std::string self_addr_;
  mutable std::mutex mu_;  // links_ (status() runs on any relay thread)
  std::vector<std::unique_ptr<MeshLink>> links_;
};

}  // namespace derp::server
