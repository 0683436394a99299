// The relay core: who is connected under which key, routing of packets between connections,
// duplicate-key policy, watchers, and who must hear PeerGone. PROTOCOL.md §4.1–§4.6, §4.12.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "derp/key.h"
#include "derp/server.h"
#include "server/admission.h"
#include "server/client_conn.h"
#include "server/faults.h"
#include "server/route_hooks.h"
#include "server/stats.h"

namespace derp::server {

// A mesh link that can carry packets to keys connected to another relay (mesh.h). forward()
// runs on a relay thread under the relay's shared lock: it must not block.
class Forwarder {
 public:
  virtual ~Forwarder() = default;
  // Takes its own chunk reference when it keeps the packet.
  virtual void forward(const NodePublic& src, const NodePublic& dst, Chunk* chunk,
                       const uint8_t* data, uint32_t len, bool disco) = 0;
  // False while the link is down (forward() would drop): route() prefers another forwarder
  // of the same key. Called under the relay's shared lock: must not block.
  virtual bool usable() const { return true; }
};

class Relay {
 public:
  Relay(const ServerOptions& opts, Stats& stats) : opts_(opts), stats_(stats), admission_(opts, stats) {}

  // After a good ClientInfo: makes the connection routable and tells watchers.
  void register_client(const std::shared_ptr<ClientConn>& c);
  // When a registered connection ends: dup-set rules, PeerGone to watchers and to everyone
  // that was handed packets from the key when it was the key's last connection.
  void unregister_client(ClientConn* c);

  // Routes one packet from `from` (whose read chunk holds the payload). `src` is the RecvPacket
  // source: from's key, or the ForwardPacket's source when `forwarded`.
  // kUnknown when the destination is unknown (the caller decides about NotHere); kWait when
  // nothing was done because the destination's queue is full and draining and `waiter` (the
  // sending connection, or nullptr when it must not wait) is to retry when woken.
  enum class Routed : uint8_t { kDone, kUnknown, kWait };
  Routed route(const NodePublic& src, const NodePublic& dst, Chunk* chunk, const uint8_t* data,
               uint32_t len, bool disco, bool forwarded, ClientConn* waiter = nullptr);

  // Any frame from a duplicate connection makes it the active one (last writer is active).
  void note_dup_activity(ClientConn* c);
  // WatchConns from a mesh peer: PeerPresent for every key now, then live updates.
  void add_watcher(const std::shared_ptr<ClientConn>& c);
  // ClosePeer: closes every connection of `key`. False when nobody has that key.
  bool close_peer(const NodePublic& key);
  // Closes every registered connection (WebSocket clients get a close frame with `code`).
  void close_all(CloseCode code, const std::string& why);
  // Registered connections right now.
  size_t connection_count() const;
  // True when `key` has a connection here.
  bool connected(const NodePublic& key) const;

  // Health problem for everyone now and for every later client ("" = healthy).
  void set_health(std::string problem);
  // ServerRestarting to every connection.
  void broadcast_restarting(uint32_t reconnect_in_ms, uint32_t try_for_ms);
  // True when no connection has anything left to write.
  bool all_writes_idle() const;
  // Fault injection: stop reading from every connection of `key`; or mark the key's
  // connections as duplicates with none active, as if another connection with the key had
  // spoken last (packets drop as dup_client until one of them speaks). False: not connected.
  bool stall(const NodePublic& key);
  bool churn(const NodePublic& key);
  // Undoes stall(): every stalled connection of `key` (nullptr: of every key) reads again.
  // Returns how many connections were resumed.
  size_t unstall(const NodePublic* key);

  FaultState& faults() { return faults_; }
  // Set once by the server before the loops run.
  void set_route_hooks(RouteHooks h) { route_hooks_ = std::move(h); }
  const RouteHooks& route_hooks() const { return route_hooks_; }
  Admission& admission() { return admission_; }
  // Mesh (derper's clientsMesh / multiForwarder): `key` is connected to the relay behind `f`.
  // Packets for a key that is not local go to its oldest forwarder; a local client wins.
  void add_forwarder(const NodePublic& key, Forwarder* f);
  void remove_forwarder(const NodePublic& key, Forwarder* f);
  // Forgets `f` everywhere (the link is going away); after this, route() never calls it.
  void remove_forwarder_everywhere(Forwarder* f);
  // Mesh peer gauges, kept by the mesh.
  std::atomic<int64_t> mesh_peers{0};
  std::atomic<int64_t> mesh_peers_connected{0};

  // Gauges computed from the tables.
  void fill_gauges(std::map<std::string, int64_t>& out) const;
  // Drops every table entry (server shutdown, after the loops stopped).
  void clear();

 private:
  struct ClientSet {
    std::vector<std::shared_ptr<ClientConn>> conns;  // connect order
    ClientConn* active = nullptr;
    std::vector<ClientConn*> send_history;  // duplicates in the order they last spoke
  };

  // PeerGone(Disconnected) to every connection that was handed packets from `key`.
  void notify_receivers_gone(const NodePublic& key);
  void remember_sent_from(const NodePublic& src, const std::shared_ptr<ClientConn>& dst);
  std::vector<std::shared_ptr<ClientConn>> all_conns() const;

  const ServerOptions& opts_;
  Stats& stats_;
  FaultState faults_;
  Admission admission_;
  RouteHooks route_hooks_;
  mutable std::mutex health_mu_;
  std::string health_;

  mutable std::shared_mutex mu_;
  std::unordered_map<NodePublic, ClientSet> clients_;
  std::vector<std::shared_ptr<ClientConn>> watchers_;
  // Keys connected elsewhere → their forwarders, oldest first (mu_).
  std::unordered_map<NodePublic, std::vector<Forwarder*>> remote_;

  // src key → connections that were handed a packet from it (owed a PeerGone when it leaves).
  std::mutex sent_mu_;
  std::unordered_map<NodePublic, std::vector<std::weak_ptr<ClientConn>>> sent_from_;
};

}  // namespace derp::server
