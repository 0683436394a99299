#include "server/mesh.h"

#include <fmt/format.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "derp/client.h"
#include "derp/watch.h"

namespace derp::server {

namespace {
constexpr size_t kForwardQueueDepth = 512;

// "host:port" of "scheme://host:port/path" (the whole authority when there is no path).
std::string url_authority(const std::string& url) {
  const auto start = url.find("://");
  if (start == std::string::npos) return "";
  const auto end = url.find_first_of("/?#", start + 3);
  return url.substr(start + 3, end == std::string::npos ? std::string::npos : end - start - 3);
}
}  // namespace

Result<MeshTarget> parse_mesh_target(const std::string& entry) {
  auto bad = [&](std::string_view why) {
    return Error(ErrorKind::kUsage, fmt::format("mesh peer {:?}: {}", entry, why));
  };
  MeshTarget t;
  t.entry = entry;
  if (entry.empty()) return bad("empty entry");
  if (entry.find_first_of(" \t\r\n") != std::string::npos) return bad("contains white space");
  if (entry.starts_with("http://") || entry.starts_with("https://")) {
    t.url = entry;
    return t;
  }
  std::string host = entry;
  std::string dial = entry;
  if (const auto slash = entry.find('/'); slash != std::string::npos) {
    host = entry.substr(0, slash);
    dial = entry.substr(slash + 1);
    if (host.empty() || dial.empty() || dial.find('/') != std::string::npos) {
      return bad("want host, host:port, host/dialhost or an http(s):// URL");
    }
  }
  // derper dials every entry as https://ENTRY/derp: mesh links between relays are always TLS.
  // A plain-HTTP peer (a test relay) is named by an explicit http:// URL instead.
  const auto port_of = [](const std::string& h) -> std::string {
    const auto colon = h.rfind(':');
    if (colon == std::string::npos || h.find(']', colon) != std::string::npos) return "";
    return h.substr(colon);  // ":PORT"
  };
  const std::string host_port = port_of(host);
  if (host != dial) {
    // derper's host/dialhost: the URL is host's, only the TCP dial goes to dialhost, on the
    // URL's port. The certificate must be valid for the host part, without a port.
    if (!host_port.empty() && port_of(dial).empty()) dial += host_port;
    t.cert_name = host.substr(0, host.size() - host_port.size());
    if (t.cert_name.size() > 2 && t.cert_name.front() == '[' && t.cert_name.back() == ']') {
      t.cert_name = t.cert_name.substr(1, t.cert_name.size() - 2);
    }
  }
  t.url = "https://" + dial + "/derp";
  return t;
}

// One outgoing link: the mesh client, its watch loop, and a bounded queue of packets to
// forward (chunk references, no copy) drained by a sender thread.
class MeshLink final : public Forwarder {
 public:
  MeshLink(const ServerOptions& opts, Relay& relay, Stats& stats, MeshTarget target)
      : opts_(opts), relay_(relay), stats_(stats), target_(std::move(target)),
        self_(opts.private_key.public_key()), ring_(kForwardQueueDepth) {}

  ~MeshLink() override { stop(); }

  Result<void> start() {
    ClientOptions co;
    co.private_key = opts_.private_key;  // derper meshes under the relay's own key
    co.server_url = target_.url;
    co.cert_name = target_.cert_name;
    co.ca_file = opts_.mesh_ca_file;  // on top of the system store (or SSL_CERT_FILE)
    co.mesh_key = opts_.mesh_key;
    co.connect_timeout = std::chrono::milliseconds(5000);
    co.write_timeout = std::chrono::milliseconds(5000);
    co.recv_queue_depth = 4096;
    if (opts_.verbose && opts_.log) co.log = opts_.log;
    auto client = Client::create(std::move(co));
    if (!client) return std::move(client).error().wrap("mesh peer " + target_.entry);
    client_ = std::move(*client);

    WatchCallbacks cb;
    cb.add = [this](const WatchPeer& p) {
      if (p.key != self_) relay_.add_forwarder(p.key, this);
    };
    cb.gone = [this](const WatchGone& g) { relay_.remove_forwarder(g.key, this); };
    cb.synced = [this](uint64_t gen, size_t peers) {
      if (!up_.exchange(true)) relay_.mesh_peers_connected.fetch_add(1);
      log(fmt::format("mesh link to {} up (connection {}, {} peer(s))", target_.url, gen, peers));
    };
    cb.disconnected = [this](const Error& e, std::chrono::milliseconds retry) {
      if (up_.exchange(false)) relay_.mesh_peers_connected.fetch_sub(1);
      log(fmt::format("mesh link to {}: {}; reconnecting in {} ms", target_.url, e.message,
                      retry.count()));
    };
    WatchOptions wo;
    wo.ignore_server_key = self_;
    wo.min_backoff = std::chrono::milliseconds(100);
    wo.max_backoff = std::chrono::milliseconds(5000);
    wo.stale_after = opts_.mesh_stale_after;
    wo.log = [this](std::string_view line) {
      if (line.find("self-connect") != std::string_view::npos) log(std::string(line));
    };
    sender_ = std::thread([this] { send_loop(); });
    watch_ = WatchLoop::start(*client_, std::move(cb), std::move(wo));
    relay_.mesh_peers.fetch_add(1);
    return {};
  }

  void stop() {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    if (watch_) watch_->stop();  // no more add/gone callbacks after this
    relay_.remove_forwarder_everywhere(this);  // and no more forward() calls
    if (client_) client_->close();
    if (sender_.joinable()) sender_.join();
    std::lock_guard lk(mu_);
    while (size_ > 0) {
      Item& it = ring_[head_];
      head_ = (head_ + 1) % ring_.size();
      --size_;
      ChunkPool::unref(it.chunk);
      stats_.add(Counter::kMeshForwardDrops);
    }
    if (up_.exchange(false)) relay_.mesh_peers_connected.fetch_sub(1);
    if (client_) relay_.mesh_peers.fetch_sub(1);
  }

  bool usable() const override { return up_.load(std::memory_order_relaxed); }
  MeshPeerStatus status() const { return {target_.entry, target_.url, usable()}; }

  // Hot path: a slot in a ring allocated once, one chunk reference, no copy.
  void forward(const NodePublic& src, const NodePublic& dst, Chunk* chunk, const uint8_t* data,
               uint32_t len, bool disco) override {
    Chunk* evicted = nullptr;
    {
      std::lock_guard lk(mu_);
      if (stopping_ || !up_.load(std::memory_order_relaxed)) {
        stats_.add(Counter::kMeshForwardDrops);
        stats_.drop(DropReason::kGoneDisconnected, disco, len);
        return;
      }
      if (size_ == ring_.size()) {  // drop the oldest, as the client queues do
        evicted = ring_[head_].chunk;
        head_ = (head_ + 1) % ring_.size();
        --size_;
      }
      ChunkPool::ref(chunk);
      ring_[(head_ + size_) % ring_.size()] = Item{chunk, data, len, disco, src, dst};
      ++size_;
    }
    cv_.notify_one();
    if (evicted) {
      ChunkPool::unref(evicted);
      stats_.add(Counter::kMeshForwardDrops);
      stats_.drop(DropReason::kQueueHead, disco, len);
    }
  }

 private:
  struct Item {
    Chunk* chunk = nullptr;
    const uint8_t* data = nullptr;
    uint32_t len = 0;
    bool disco = false;
    NodePublic src;
    NodePublic dst;
  };

  void log(const std::string& line) {
    if (opts_.log) opts_.log(line);
  }

  void send_loop() {
    for (;;) {
      Item it;
      {
        std::unique_lock lk(mu_);
        cv_.wait(lk, [this] { return stopping_ || size_ > 0; });
        if (stopping_) return;
        it = ring_[head_];
        head_ = (head_ + 1) % ring_.size();
        --size_;
      }
      // derp::Client::forward_packet builds the frame in a fresh buffer (one copy and one
      // allocation per forwarded packet, on this thread, not on the relay's loops).
      auto r = client_->forward_packet(it.src, it.dst, {it.data, it.len});
      ChunkPool::unref(it.chunk);
      if (!r) {
        stats_.add(Counter::kMeshForwardDrops);
        stats_.drop(DropReason::kWriteError, it.disco, it.len);
      }
    }
  }

  const ServerOptions& opts_;
  Relay& relay_;
  Stats& stats_;
  const MeshTarget target_;
  const NodePublic self_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<WatchLoop> watch_;
  std::thread sender_;
  std::atomic<bool> up_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<Item> ring_;  // sized once
  size_t head_ = 0;
  size_t size_ = 0;
};

Mesh::Mesh(const ServerOptions& opts, Relay& relay, Stats& stats, std::string self_addr)
    : opts_(opts), relay_(relay), stats_(stats), self_addr_(std::move(self_addr)) {}

Mesh::~Mesh() { stop(); }

Result<void> Mesh::start() {
  if (opts_.mesh_with.empty()) return {};
  if (opts_.mesh_key.is_zero()) {
    return Error(ErrorKind::kUsage, "mesh peers were given but no mesh key (--mesh-psk-file)");
  }
  std::vector<MeshTarget> targets;
  for (const auto& entry : opts_.mesh_with) {
    auto t = parse_mesh_target(entry);
    if (!t) return std::move(t).error();
    // Our own host:port, whatever the scheme (plain HTTP or TLS relay). derper has no such
    // check: it dials its own name and drops the link on seeing its own key, which the watch
    // loop does here too (ignore_server_key) for a name we cannot recognise.
    if (entry == self_addr_ || url_authority(t->url) == self_addr_) {
      if (opts_.log) opts_.log(fmt::format("mesh: skipping {} (this relay)", entry));
      continue;
    }
    targets.push_back(std::move(*t));
  }
  for (auto& t : targets) {
    auto link = std::make_unique<MeshLink>(opts_, relay_, stats_, std::move(t));
    if (auto ok = link->start(); !ok) {
      stop();
      return ok;
    }
    std::lock_guard lk(mu_);
    links_.push_back(std::move(link));
  }
  if (opts_.log && !targets.empty()) {
    opts_.log(fmt::format("mesh: linking with {} peer(s)", targets.size()));
  }
  return {};
}

void Mesh::stop() {
  std::vector<std::unique_ptr<MeshLink>> links;
  {
    // Stopping a link joins its threads: not under the lock that status() takes.
    std::lock_guard lk(mu_);
    links.swap(links_);
  }
  for (auto& l : links) l->stop();
}

std::vector<MeshPeerStatus> Mesh::status() const {
  std::lock_guard lk(mu_);
  std::vector<MeshPeerStatus> out;
  out.reserve(links_.size());
  for (const auto& l : links_) out.push_back(l->status());
  return out;
}

}  // namespace derp::server
