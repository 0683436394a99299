#include "server/relay.h"

#include <algorithm>

namespace derp::server {

void Relay::register_client(const std::shared_ptr<ClientConn>& c) {
  std::vector<std::shared_ptr<ClientConn>> watchers;
  {
    std::unique_lock lock(mu_);
    ClientSet& set = clients_[c->key()];
    set.conns.push_back(c);
    c->registered = true;
    if (set.conns.size() > 1) {
      // Last connected is active (derper's default "last writer is active" policy).
      for (auto& other : set.conns) {
        other->dup.store(true, std::memory_order_relaxed);
        other->active.store(false, std::memory_order_relaxed);
      }
      stats_.add(Counter::kTotalDupClientConns);
    }
    set.active = c.get();
    c->active.store(true, std::memory_order_relaxed);
    watchers = watchers_;
  }
  stats_.add(Counter::kGaugeCurrentConnections);
  for (auto& w : watchers) w->enqueue_watch_present(c->presence());
  std::string health;
  {
    std::lock_guard lock(health_mu_);
    health = health_;
  }
  if (!health.empty()) c->send_health(std::move(health));
}

void Relay::unregister_client(ClientConn* c) {
  std::vector<std::shared_ptr<ClientConn>> watchers;
  std::shared_ptr<ClientConn> keep;  // destroy outside the lock
  bool gone = false;
  bool still_remote = false;
  const NodePublic key = c->key();
  {
    std::unique_lock lock(mu_);
    if (!c->registered) return;
    c->registered = false;
    if (c->watcher) {
      std::erase_if(watchers_, [c](const auto& w) { return w.get() == c; });
      c->watcher = false;
    }
    auto it = clients_.find(key);
    if (it == clients_.end()) return;
    ClientSet& set = it->second;
    auto pos = std::find_if(set.conns.begin(), set.conns.end(),
                            [c](const auto& p) { return p.get() == c; });
    if (pos == set.conns.end()) return;
    keep = std::move(*pos);
    set.conns.erase(pos);
    std::erase(set.send_history, c);
    if (set.conns.empty()) {
      clients_.erase(it);
      gone = true;
    } else if (set.conns.size() == 1) {
      ClientConn* sole = set.conns.front().get();
      sole->dup.store(false, std::memory_order_relaxed);
      sole->active.store(true, std::memory_order_relaxed);
      set.active = sole;
      set.send_history.clear();
    } else if (set.active == c) {
      // The most recent remaining sender takes over; with none, packets drop as dup_client
      // until one of them speaks.
      set.active = set.send_history.empty() ? nullptr : set.send_history.back();
      if (set.active) set.active->active.store(true, std::memory_order_relaxed);
    }
    c->active.store(false, std::memory_order_relaxed);
    if (gone) {
      watchers = watchers_;
      still_remote = remote_.find(key) != remote_.end();
    }
  }
  stats_.add(Counter::kGaugeCurrentConnections, -1);
  if (!gone) return;
  for (auto& w : watchers) w->enqueue_watch_gone(key);
  // Still reachable through a mesh peer (it moved there): nobody is owed a PeerGone yet.
  if (!still_remote) notify_receivers_gone(key);
}

void Relay::notify_receivers_gone(const NodePublic& key) {
  std::vector<std::weak_ptr<ClientConn>> owed;
  {
    std::lock_guard lock(sent_mu_);
    auto it = sent_from_.find(key);
    if (it != sent_from_.end()) {
      owed = std::move(it->second);
      sent_from_.erase(it);
    }
  }
  for (auto& w : owed) {
    if (auto dst = w.lock()) dst->enqueue_peer_gone_sent_from(key);
  }
}

Relay::Routed Relay::route(const NodePublic& src, const NodePublic& dst, Chunk* chunk,
                           const uint8_t* data, uint32_t len, bool disco, bool forwarded,
                           ClientConn* waiter) {
  std::shared_ptr<ClientConn> first_time;
  if (faults_.any() && faults_.should_drop()) {
    stats_.drop(DropReason::kFaultInjected, disco, len);
    return Routed::kDone;
  }
  {
    std::shared_lock lock(mu_);
    auto it = clients_.find(dst);
    if (it == clients_.end()) {
      // Not here: a mesh peer may have it. A forwarded packet is never forwarded again (loops).
      if (!forwarded) {
        auto r = remote_.find(dst);
        if (r != remote_.end() && !r->second.empty()) {
          // Counted before handing over: the peer relay may deliver it before we return, and
          // anyone who saw the packet arrive must also see it counted here.
          // derper's multiForwarder: the oldest link that reported the key, but one whose
          // link is down is passed over while it waits to reconnect or go stale, so a key also
          // connected to another relay stays reachable through that one.
          Forwarder* f = r->second.front();
          for (Forwarder* candidate : r->second) {
            if (candidate->usable()) {
              f = candidate;
              break;
            }
          }
          stats_.add(Counter::kPacketsForwardedOut);
          f->forward(src, dst, chunk, data, len, disco);
          return Routed::kDone;
        }
      }
      lock.unlock();
      stats_.drop(forwarded ? DropReason::kUnknownDestOnFwd : DropReason::kUnknownDest, disco, len);
      return Routed::kUnknown;
    }
    const ClientSet& set = it->second;
    if (set.active == nullptr) {
      lock.unlock();
      stats_.drop(DropReason::kDupClient, disco, len);
      return Routed::kDone;
    }
    switch (set.active->enqueue_packet(src, chunk, data, len, disco, waiter)) {
      case ClientConn::Enqueued::kWait:
        return Routed::kWait;
      case ClientConn::Enqueued::kFirst:
        first_time = set.active->shared_from_this();
        break;
      case ClientConn::Enqueued::kQueued:
        break;
    }
  }
  if (first_time) remember_sent_from(src, first_time);
  return Routed::kDone;
}

void Relay::remember_sent_from(const NodePublic& src, const std::shared_ptr<ClientConn>& dst) {
  std::lock_guard lock(sent_mu_);
  auto& owed = sent_from_[src];
  // A long-lived source outlives many receivers: drop the dead ones now and then (amortised
  // O(1)), or the list would grow with every receiver that ever reconnected.
  if (owed.size() >= 8 && (owed.size() & (owed.size() - 1)) == 0) {
    std::erase_if(owed, [](const auto& w) { return w.expired(); });
  }
  owed.push_back(dst);
}

void Relay::note_dup_activity(ClientConn* c) {
  std::unique_lock lock(mu_);
  if (!c->registered) return;
  auto it = clients_.find(c->key());
  if (it == clients_.end()) return;
  ClientSet& set = it->second;
  if (set.conns.size() < 2) {
    // Only after a churn fault: the sole connection takes its key back by speaking.
    set.active = c;
    c->dup.store(false, std::memory_order_relaxed);
    c->active.store(true, std::memory_order_relaxed);
    return;
  }
  std::erase(set.send_history, c);
  set.send_history.push_back(c);
  if (set.active != c) {
    if (set.active) set.active->active.store(false, std::memory_order_relaxed);
    set.active = c;
    c->active.store(true, std::memory_order_relaxed);
  }
}

void Relay::add_watcher(const std::shared_ptr<ClientConn>& c) {
  std::vector<Presence> now;
  {
    std::unique_lock lock(mu_);
    if (!c->registered || c->watcher) return;
    c->watcher = true;
    watchers_.push_back(c);
    now.reserve(clients_.size());
    for (auto& [key, set] : clients_) {
      if (set.active) now.push_back(set.active->presence());
    }
  }
  for (auto& p : now) c->enqueue_watch_present(p);
}

bool Relay::close_peer(const NodePublic& key) {
  std::vector<std::shared_ptr<ClientConn>> conns;
  {
    std::shared_lock lock(mu_);
    auto it = clients_.find(key);
    if (it == clients_.end()) return false;
    conns = it->second.conns;
  }
  for (auto& c : conns) c->close_async("closed on request (ClosePeer or close= fault)");
  return true;
}

void Relay::close_all(CloseCode code, const std::string& why) {
  for (auto& c : all_conns()) c->close_async(why, code);
}

bool Relay::connected(const NodePublic& key) const {
  std::shared_lock lock(mu_);
  return clients_.find(key) != clients_.end();
}

size_t Relay::connection_count() const {
  std::shared_lock lock(mu_);
  size_t n = 0;
  for (auto& [key, set] : clients_) n += set.conns.size();
  return n;
}

void Relay::add_forwarder(const NodePublic& key, Forwarder* f) {
  std::unique_lock lock(mu_);
  auto& fs = remote_[key];
  if (std::find(fs.begin(), fs.end(), f) != fs.end()) return;
  fs.push_back(f);
  if (fs.size() == 2) stats_.add(Counter::kMultiForwarderCreated);
}

void Relay::remove_forwarder(const NodePublic& key, Forwarder* f) {
  {
    std::unique_lock lock(mu_);
    auto it = remote_.find(key);
    if (it == remote_.end()) return;
    const size_t before = it->second.size();
    std::erase(it->second, f);
    if (it->second.size() == before) return;
    if (before == 2) stats_.add(Counter::kMultiForwarderDeleted);
    if (!it->second.empty()) return;
    remote_.erase(it);
    if (clients_.find(key) != clients_.end()) return;
  }
  // Gone from the region (derper's notePeerGoneFromRegion): whoever got packets from it here
  // hears PeerGone, as if it had been local.
  notify_receivers_gone(key);
}

void Relay::remove_forwarder_everywhere(Forwarder* f) {
  std::unique_lock lock(mu_);
  for (auto it = remote_.begin(); it != remote_.end();) {
    const size_t before = it->second.size();
    std::erase(it->second, f);
    if (before == 2 && it->second.size() == 1) stats_.add(Counter::kMultiForwarderDeleted);
    it = it->second.empty() ? remote_.erase(it) : std::next(it);
  }
}

std::vector<std::shared_ptr<ClientConn>> Relay::all_conns() const {
  std::vector<std::shared_ptr<ClientConn>> out;
  std::shared_lock lock(mu_);
  for (auto& [key, set] : clients_) out.insert(out.end(), set.conns.begin(), set.conns.end());
  return out;
}

void Relay::set_health(std::string problem) {
  {
    std::lock_guard lock(health_mu_);
    health_ = problem;
  }
  for (auto& c : all_conns()) c->send_health(problem);
}

void Relay::broadcast_restarting(uint32_t reconnect_in_ms, uint32_t try_for_ms) {
  for (auto& c : all_conns()) c->send_restarting(reconnect_in_ms, try_for_ms);
}

bool Relay::all_writes_idle() const {
  for (auto& c : all_conns()) {
    if (!c->write_idle()) return false;
  }
  return true;
}

bool Relay::stall(const NodePublic& key) {
  std::shared_lock lock(mu_);
  auto it = clients_.find(key);
  if (it == clients_.end()) return false;
  for (auto& c : it->second.conns) c->stall_reads.store(true, std::memory_order_relaxed);
  return true;
}

size_t Relay::unstall(const NodePublic* key) {
  std::vector<std::shared_ptr<ClientConn>> stalled;
  {
    std::shared_lock lock(mu_);
    for (auto& [k, set] : clients_) {
      if (key && k != *key) continue;
      for (auto& c : set.conns) {
        if (c->stall_reads.load(std::memory_order_relaxed)) stalled.push_back(c);
      }
    }
  }
  for (auto& c : stalled) c->resume_reads_async();
  return stalled.size();
}

bool Relay::churn(const NodePublic& key) {
  std::unique_lock lock(mu_);
  auto it = clients_.find(key);
  if (it == clients_.end()) return false;
  ClientSet& set = it->second;
  for (auto& c : set.conns) {
    c->dup.store(true, std::memory_order_relaxed);
    c->active.store(false, std::memory_order_relaxed);
  }
  set.active = nullptr;
  set.send_history.clear();
  stats_.add(Counter::kTotalDupClientConns);
  return true;
}

void Relay::fill_gauges(std::map<std::string, int64_t>& out) const {
  std::shared_lock lock(mu_);
  int64_t remote_only = 0;
  for (auto& [key, fs] : remote_) {
    if (clients_.find(key) == clients_.end()) ++remote_only;
  }
  int64_t dup_keys = 0, dup_conns = 0;
  for (auto& [key, set] : clients_) {
    if (set.conns.size() > 1) {
      ++dup_keys;
      dup_conns += static_cast<int64_t>(set.conns.size());
    }
  }
  out["gauge_clients_total"] = static_cast<int64_t>(clients_.size()) + remote_only;
  out["gauge_clients_local"] = static_cast<int64_t>(clients_.size());
  out["gauge_clients_remote"] = remote_only;
  out["gauge_mesh_peers"] = mesh_peers.load(std::memory_order_relaxed);
  out["gauge_mesh_peers_connected"] = mesh_peers_connected.load(std::memory_order_relaxed);
  out["gauge_watchers"] = static_cast<int64_t>(watchers_.size());
  out["gauge_current_dup_client_keys"] = dup_keys;
  out["gauge_current_dup_client_conns"] = dup_conns;
}

void Relay::clear() {
  std::unordered_map<NodePublic, ClientSet> clients;
  std::vector<std::shared_ptr<ClientConn>> watchers;
  {
    std::unique_lock lock(mu_);
    clients.swap(clients_);
    watchers.swap(watchers_);
    remote_.clear();
    for (auto& [key, set] : clients) {
      for (auto& c : set.conns) c->registered = false;
    }
  }
  std::lock_guard lock(sent_mu_);
  sent_from_.clear();
}

}  // namespace derp::server
