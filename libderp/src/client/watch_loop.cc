// WatchLoop: the mesh watch-connection loop (see derp/watch.h for the contract).
#include "derp/watch.h"

#include <arpa/inet.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace derp {

using Clock = std::chrono::steady_clock;

std::string WatchPeer::endpoint() const {
  if (!has_endpoint) return {};
  static constexpr std::array<uint8_t, 12> kV4Mapped = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char text[INET6_ADDRSTRLEN] = {};
  if (std::memcmp(ip16.data(), kV4Mapped.data(), kV4Mapped.size()) == 0) {
    inet_ntop(AF_INET, ip16.data() + 12, text, sizeof text);
    return std::string(text) + ":" + std::to_string(port);
  }
  inet_ntop(AF_INET6, ip16.data(), text, sizeof text);
  return "[" + std::string(text) + "]:" + std::to_string(port);
}

struct WatchLoop::Impl {
  Impl(Client& c, WatchCallbacks cb, WatchOptions o)
      : client(c), callbacks(std::move(cb)), opts(std::move(o)) {}

  Client& client;
  WatchCallbacks callbacks;
  WatchOptions opts;
  std::thread thread;

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::atomic<bool> self_connect{false};
  std::atomic<uint64_t> synced_gen{0};

  // Loop-thread state.
  std::map<NodePublic, WatchPeer> known;  // what add() reported and gone() did not take back
  std::set<NodePublic> unconfirmed;       // known keys not yet seen on the current connection
  uint64_t gen = 0;                       // connection the messages come from
  bool gen_synced = false;
  bool awaiting_list = false;  // WatchConns sent on `gen`, its list not complete yet
  PingData marker{};
  std::optional<Clock::time_point> down_since;

  void log(const std::string& line) const {
    if (opts.log) opts.log(line);
  }

  bool stopped() {
    std::lock_guard lk(mu);
    return stopping;
  }

  // Waits d or until stop(); false when stopping.
  bool wait(std::chrono::milliseconds d) {
    std::unique_lock lk(mu);
    return !cv.wait_for(lk, d, [this] { return stopping; });
  }

  void drop_all_stale() {
    if (known.empty()) return;
    log("watch " + client.server_url() + ": link down for a while; dropping " +
        std::to_string(known.size()) + " peer(s)");
    auto old = std::move(known);
    known.clear();
    unconfirmed.clear();
    for (auto& [key, peer] : old) {
      if (callbacks.gone) callbacks.gone(WatchGone{key, PeerGoneReason::kMeshConnBroke, true});
    }
  }

  void check_stale() {
    if (down_since && opts.stale_after.count() > 0 &&
        Clock::now() - *down_since >= opts.stale_after) {
      drop_all_stale();
    }
  }

  // A message of a connection we have not seen yet: ask for its peers, then mark the list end.
  bool begin_generation(uint64_t g) {
    gen = g;
    gen_synced = false;
    awaiting_list = true;
    unconfirmed.clear();
    for (auto& [key, peer] : known) unconfirmed.insert(key);
    const NodePublic server = client.server_public_key();
    if (!opts.ignore_server_key.is_zero() && server == opts.ignore_server_key) {
      log("watch " + client.server_url() + ": detected self-connect; ignoring host");
      self_connect = true;
      return false;
    }
    for (size_t i = 0; i < marker.size(); ++i) marker[i] = static_cast<uint8_t>(0xa5 ^ (g >> (8 * i)));
    // Failures surface as a recv() error on the next call.
    if (client.watch_conns()) (void)client.send_ping(marker);
    return true;
  }

  void finish_sync() {
    gen_synced = true;
    awaiting_list = false;
    down_since.reset();
    auto missing = std::move(unconfirmed);
    unconfirmed.clear();
    if (!missing.empty()) {
      log("watch " + client.server_url() + ": " + std::to_string(missing.size()) +
          " peer(s) did not reappear after reconnect");
    }
    for (const auto& key : missing) {
      known.erase(key);
      if (callbacks.gone) callbacks.gone(WatchGone{key, PeerGoneReason::kMeshConnBroke, true});
    }
    synced_gen = gen;
    if (callbacks.synced) callbacks.synced(gen, known.size());
  }

  void on_present(const PeerPresentMessage& m) {
    WatchPeer p;
    p.key = m.peer;
    p.has_endpoint = m.has_endpoint;
    p.ip16 = m.ip16;
    p.port = m.port;
    p.has_flags = m.has_flags;
    p.flags = m.flags;
    unconfirmed.erase(p.key);
    auto it = known.find(p.key);
    if (it != known.end() && it->second == p) return;
    known[p.key] = p;
    if (callbacks.add) callbacks.add(p);
  }

  void on_gone(const PeerGoneMessage& m) {
    if (m.reason == PeerGoneReason::kNotHere) {
      log("watch " + client.server_url() + ": peer " + m.peer.short_string() + " not here");
    }
    unconfirmed.erase(m.peer);
    if (known.erase(m.peer) == 0) return;
    if (callbacks.gone) callbacks.gone(WatchGone{m.peer, m.reason, false});
  }

  void run() {
    auto backoff = opts.min_backoff;
    while (!stopped()) {
      auto r = client.recv_detail(std::chrono::milliseconds(250));
      if (!r) {
        const Error& e = r.error();
        if (e.kind == ErrorKind::kClosed || stopped()) break;
        if (e.kind == ErrorKind::kTimeout && client.connected_state().connected) {
          check_stale();
          continue;
        }
        if (!down_since) down_since = Clock::now();
        Error why = e;
        if (awaiting_list) {
          // Connected, then dropped before the Pong: derper closes a watcher without the mesh
          // key right after its WatchConns.
          why = Error(ErrorKind::kProtocol,
                      "relay " + client.server_url() +
                          " closed the connection before sending its peer list (wrong mesh key?): " +
                          e.message);
        }
        gen_synced = false;
        awaiting_list = false;
        log("watch " + client.server_url() + ": " + why.message + "; retrying in " +
            std::to_string(backoff.count()) + " ms");
        if (callbacks.disconnected) callbacks.disconnected(why, backoff);
        const auto until = Clock::now() + backoff;
        while (Clock::now() < until) {
          if (!wait(std::min<std::chrono::milliseconds>(
                  std::chrono::milliseconds(100),
                  std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()) +
                      std::chrono::milliseconds(1)))) {
            return;
          }
          check_stale();
        }
        backoff = std::min(opts.max_backoff, backoff * 2);
        continue;
      }
      if (r->generation != gen) {
        if (!begin_generation(r->generation)) break;
      }
      if (auto* present = std::get_if<PeerPresentMessage>(&r->message)) {
        on_present(*present);
      } else if (auto* gone = std::get_if<PeerGoneMessage>(&r->message)) {
        on_gone(*gone);
      } else if (auto* pong = std::get_if<PongMessage>(&r->message)) {
        if (!gen_synced && pong->data == marker) {
          backoff = opts.min_backoff;
          finish_sync();
        }
      }
    }
  }
};

WatchLoop::WatchLoop(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<WatchLoop> WatchLoop::start(Client& client, WatchCallbacks callbacks,
                                            WatchOptions options) {
  if (options.min_backoff.count() <= 0) options.min_backoff = std::chrono::milliseconds(1);
  if (options.max_backoff < options.min_backoff) options.max_backoff = options.min_backoff;
  auto impl = std::make_shared<Impl>(client, std::move(callbacks), std::move(options));
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<WatchLoop>(new WatchLoop(std::move(impl)));
}

WatchLoop::~WatchLoop() { stop(); }

void WatchLoop::stop() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  impl_->client.close();
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool WatchLoop::self_connect() const { return impl_->self_connect; }
uint64_t WatchLoop::synced_generation() const { return impl_->synced_gen; }

}  // namespace derp
