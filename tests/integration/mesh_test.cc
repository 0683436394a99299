// Relay mesh (PROTOCOL.md §4.5, §4.12, §5, §7.4): three in-process relays in a full mesh on
// 127.0.0.1, the watch loop, and derp-watch (--once, --json, --check-mesh) run as a process.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "derp/client.h"
#include "derp/server.h"
#include "derp/watch.h"
#include "support/process.h"
#include "support/pty.h"
#include "support/relay_harness.h"
#include "support/test_ca.h"
#include "support/tls_proxy.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

MeshKey mesh_key_of(char c) {
  auto k = MeshKey::parse(std::string(64, c));
  EXPECT_TRUE(k);
  return *k;
}

std::string url_of(uint16_t port) { return "http://127.0.0.1:" + std::to_string(port) + "/derp"; }

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) v.push_back(nlohmann::json::parse(line));
  }
  return v;
}

std::unique_ptr<Client> make_client(const std::string& url, const NodePrivate& key,
                                    MeshKey mesh = {}) {
  ClientOptions o;
  o.private_key = key;
  o.server_url = url;
  o.mesh_key = mesh;
  o.connect_timeout = 5s;
  auto c = Client::create(std::move(o));
  EXPECT_TRUE(c) << c.error().message;
  return c ? std::move(*c) : nullptr;
}

// A plain TCP relay between one mesh link and its peer relay: cut() closes every connection
// and the listener, so the link breaks and cannot reconnect while both relays keep running.
class MeshLinkCutter {
 public:
  explicit MeshLinkCutter(uint16_t backend) : backend_(backend) {
    listen_fd_ = listen_loopback(16, &port_);
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~MeshLinkCutter() { cut(); }
  uint16_t port() const { return port_; }

  void cut() {
    {
      std::lock_guard lk(mu_);
      if (cut_) return;
      cut_ = true;
      for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
    }
    ::shutdown(listen_fd_, SHUT_RDWR);
    accept_thread_.join();
    for (auto& t : pumps_) t.join();
    for (int fd : fds_) ::close(fd);
    ::close(listen_fd_);
  }

 private:
  void accept_loop() {
    for (;;) {
      int c = ::accept(listen_fd_, nullptr, nullptr);
      if (c < 0) return;
      int b = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(backend_);
      std::lock_guard lk(mu_);
      fds_.push_back(c);
      fds_.push_back(b);
      if (cut_ || ::connect(b, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::shutdown(c, SHUT_RDWR);
        continue;
      }
      pumps_.emplace_back([c, b] { pump(c, b); });
      pumps_.emplace_back([c, b] { pump(b, c); });
    }
  }
  static void pump(int from, int to) {
    char buf[16384];
    for (;;) {
      const ssize_t n = ::read(from, buf, sizeof buf);
      if (n <= 0) break;
      if (::send(to, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
    }
    ::shutdown(to, SHUT_RDWR);
    ::shutdown(from, SHUT_RDWR);
  }

  uint16_t backend_;
  uint16_t port_ = 0;
  int listen_fd_ = -1;
  std::mutex mu_;
  bool cut_ = false;
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;
  std::thread accept_thread_;
};

// Three relays meshed with each other; each config lists all three (itself included: skipped),
// as http:// URLs: a bare host:port would be https, as in derper.
class Mesh3 : public ::testing::Test {
 protected:
  void SetUp() override {
    psk_ = mesh_key_of('a');
    if (ports_.empty()) ports_ = free_loopback_ports(3);
    for (int i = 0; i < 3; ++i) keys_[i] = NodePrivate::generate();
    for (int i = 0; i < 3; ++i) start(i, psk_);
    ASSERT_TRUE(wait_mesh_up());
  }
  void TearDown() override {
    for (auto& r : relays_) r.reset();
  }

  void start(int i, MeshKey psk, bool peer_present_flags = true) {
    ServerOptions o;
    o.peer_present_flags = peer_present_flags;
    o.private_key = keys_[i];
    o.listen_addr = "127.0.0.1:" + std::to_string(ports_[i]);
    o.threads = 1;
    o.mesh_key = psk;
    o.mesh_stale_after = stale_after_;
    for (int j = 0; j < 3; ++j) {
      const uint16_t p = via_[i][j] ? via_[i][j]->port() : ports_[j];
      o.mesh_with.push_back(url_of(p));  // plain-HTTP relays: explicit http:// URLs
    }
    o.log = logs_[i].sink();
    auto s = Server::start(std::move(o));
    ASSERT_TRUE(s) << s.error().message;
    relays_[i] = std::move(*s);
  }

  int64_t counter(int i, const std::string& name) { return relays_[i]->counters()[name]; }

  bool wait_mesh_up() {
    return eventually([&] {
      for (int i = 0; i < 3; ++i) {
        if (relays_[i] && counter(i, "gauge_mesh_peers_connected") != 2) return false;
      }
      return true;
    });
  }

  // Sends from `from` to `to` until a packet arrives (the mesh learns fresh keys asynchronously).
  bool delivers(Client& from, Client& to, const std::string& text) {
    const auto until = Clock::now() + kWait;
    while (Clock::now() < until) {
      if (!from.send(to.self_public_key(), {reinterpret_cast<const uint8_t*>(text.data()), text.size()})) {
        return false;
      }
      const auto stop = Clock::now() + 100ms;
      while (Clock::now() < stop) {
        auto m = to.recv(20ms);
        if (!m) continue;
        auto* p = std::get_if<ReceivedPacket>(&*m);
        if (p && p->src == from.self_public_key() &&
            std::string(p->data.begin(), p->data.end()) == text) {
          return true;
        }
      }
    }
    return false;
  }

  MeshKey psk_;
  std::chrono::milliseconds stale_after_{5000};
  std::vector<uint16_t> ports_;
  std::unique_ptr<MeshLinkCutter> via_[3][3];  // relay i's link to relay j goes through this
  NodePrivate keys_[3];
  LogWatch logs_[3];
  std::unique_ptr<Server> relays_[3];
};

TEST_F(Mesh3, DeliversAcrossRelaysWithForwardPacket) {
  auto a = make_client(url_of(ports_[0]), NodePrivate::generate());
  auto c = make_client(url_of(ports_[2]), NodePrivate::generate());
  ASSERT_TRUE(a->connect());
  ASSERT_TRUE(c->connect());
  EXPECT_TRUE(delivers(*a, *c, "hello from A to C"));
  EXPECT_GE(counter(0, "packets_forwarded_out"), 1);
  EXPECT_GE(counter(2, "packets_forwarded_in"), 1);
  EXPECT_EQ(counter(1, "packets_forwarded_out"), 0);  // A sends to C directly, not via B
  EXPECT_EQ(counter(0, "gauge_mesh_peers"), 2);
  EXPECT_TRUE(logs_[0].wait_for("skipping " + url_of(ports_[0]) + " (this relay)"));
  // C's client is known at A as remote.
  EXPECT_GE(counter(0, "gauge_clients_remote"), 1);
}

TEST_F(Mesh3, FollowsClientMovingBetweenRelaysAndSendsPeerGone) {
  const NodePrivate mover = NodePrivate::generate();
  auto x = make_client(url_of(ports_[2]), NodePrivate::generate());
  auto on_a = make_client(url_of(ports_[0]), mover);
  ASSERT_TRUE(x->connect());
  ASSERT_TRUE(on_a->connect());
  // The mover sends to x (so x is owed a PeerGone when it leaves the region) and x reaches it.
  EXPECT_TRUE(delivers(*on_a, *x, "mover says hi"));
  EXPECT_TRUE(delivers(*x, *on_a, "x to mover at A"));

  on_a->close();
  // Leaving A (and the region): C hears it from A's watch stream and tells x.
  bool got_gone = false;
  const auto until = Clock::now() + kWait;
  while (!got_gone && Clock::now() < until) {
    auto m = x->recv(100ms);
    if (!m) continue;
    if (auto* g = std::get_if<PeerGoneMessage>(&*m)) {
      got_gone = g->peer == mover.public_key() && g->reason == PeerGoneReason::kDisconnected;
    }
  }
  EXPECT_TRUE(got_gone) << "x never got PeerGone(mover)";

  auto on_b = make_client(url_of(ports_[1]), mover);
  ASSERT_TRUE(on_b->connect());
  EXPECT_TRUE(delivers(*x, *on_b, "x to mover at B"));
  EXPECT_GE(counter(1, "packets_forwarded_in"), 1);
}

TEST_F(Mesh3, RelearnsARestartedRelay) {
  relays_[1].reset();
  ASSERT_TRUE(eventually([&] { return counter(0, "gauge_mesh_peers_connected") == 1; }));
  start(1, psk_);
  ASSERT_TRUE(wait_mesh_up());
  auto a = make_client(url_of(ports_[0]), NodePrivate::generate());
  auto b = make_client(url_of(ports_[1]), NodePrivate::generate());
  ASSERT_TRUE(a->connect());
  ASSERT_TRUE(b->connect());
  EXPECT_TRUE(delivers(*a, *b, "A to restarted B"));
  EXPECT_TRUE(delivers(*b, *a, "restarted B to A"));
}

// Relays that keep the keys of a dead link until it resyncs (no stale timeout): only the
// multiForwarder choice can move packets to another link then. Relay 0's links to 1 and 2 run
// through cutters, so a test can break one without its relay (or its clients) noticing.
class Mesh3KeepsKeysOfDownLinks : public Mesh3 {
 protected:
  void SetUp() override {
    stale_after_ = 0ms;
    ports_ = free_loopback_ports(3);
    via_[0][1] = std::make_unique<MeshLinkCutter>(ports_[1]);
    via_[0][2] = std::make_unique<MeshLinkCutter>(ports_[2]);
    Mesh3::SetUp();
  }
};

// derper's multiForwarder: key K is connected to relays B and C, so A has two links that can
// carry packets to K. When the one A uses goes down (cut between the relays; B and K's client
// there never notice, so nobody sends PeerGone), A's next packets reach K through the other
// link, without waiting for the dead link's keys to be dropped.
TEST_F(Mesh3KeepsKeysOfDownLinks, KeyOnTwoRelaysStaysReachableWhenTheLinkInUseGoesDown) {
  const NodePrivate k = NodePrivate::generate();
  auto sender = make_client(url_of(ports_[0]), NodePrivate::generate());
  std::unique_ptr<Client> holders[3];
  holders[1] = make_client(url_of(ports_[1]), k);
  holders[2] = make_client(url_of(ports_[2]), k);
  ASSERT_TRUE(sender->connect());
  ASSERT_TRUE(holders[1]->connect());
  ASSERT_TRUE(holders[2]->connect());
  // A learned K from both links.
  ASSERT_TRUE(eventually([&] { return counter(0, "multiforwarder_created") >= 1; }));

  // Which relay does A forward through? The copy of K there gets the packet.
  int used = 0;
  const auto until = Clock::now() + kWait;
  for (uint64_t seq = 0; used == 0 && Clock::now() < until; ++seq) {
    const std::string text = "to K #" + std::to_string(seq);
    ASSERT_TRUE(
        sender->send(k.public_key(), {reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
    for (int i : {1, 2}) {
      auto m = holders[i]->recv(50ms);
      auto* p = m ? std::get_if<ReceivedPacket>(&*m) : nullptr;
      if (p && p->src == sender->self_public_key()) used = i;
    }
  }
  ASSERT_NE(used, 0) << "K never got a packet from A";
  const int other = used == 1 ? 2 : 1;

  via_[0][used]->cut();
  ASSERT_TRUE(eventually([&] { return counter(0, "gauge_mesh_peers_connected") == 1; }));
  EXPECT_TRUE(delivers(*sender, *holders[other], "to K after A's link in use was cut"));
  EXPECT_GE(counter(other, "packets_forwarded_in"), 1);
}

TEST_F(Mesh3, ClosePeerFromMeshPeerClosesLocalClient) {
  auto victim = make_client(url_of(ports_[0]), NodePrivate::generate());
  ASSERT_TRUE(victim->connect());
  auto peer = make_client(url_of(ports_[0]), NodePrivate::generate(), psk_);
  ASSERT_TRUE(peer->close_peer(victim->self_public_key()));
  EXPECT_TRUE(eventually([&] { return !victim->connected_state().connected; }));
}

TEST(Mesh, WatcherWithoutOrWithWrongKeyIsRefusedAndCounted) {
  ServerOptions o;
  o.mesh_key = mesh_key_of('b');
  auto relay = start_relay(std::move(o));
  ASSERT_TRUE(relay);
  const std::string url = "http://" + relay->local_address() + "/derp";
  for (MeshKey k : {MeshKey{}, mesh_key_of('c')}) {
    auto c = make_client(url, NodePrivate::generate(), k);
    ASSERT_TRUE(c->connect());
    ASSERT_TRUE(c->watch_conns());
    auto m = c->recv(kWait);
    while (m && std::holds_alternative<ServerInfoMessage>(*m)) m = c->recv(kWait);
    EXPECT_FALSE(m) << "the relay kept a watcher without the mesh key";
  }
  EXPECT_EQ(relay->counters()["mesh_frames_refused"], 2);
}

TEST(Mesh, MeshWithNeedsAMeshKeyAndGoodEntries) {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.mesh_with = {"127.0.0.1:1"};
  auto s = Server::start(o);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().kind, ErrorKind::kUsage);
  o.mesh_key = mesh_key_of('d');
  o.mesh_with = {"a/b/c"};
  s = Server::start(o);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("a/b/c"), std::string::npos) << s.error().message;
}

// ---- the watch loop

// The relay lists the watcher's own connection too (as derper does): `self` is left out here.
struct Recorder {
  NodePublic self;
  std::mutex mu;
  std::vector<WatchPeer> adds;
  std::vector<WatchGone> gones;
  std::vector<uint64_t> syncs;
  int disconnects = 0;

  WatchCallbacks callbacks() {
    WatchCallbacks cb;
    cb.add = [this](const WatchPeer& p) {
      if (p.key == self) return;
      std::lock_guard lk(mu);
      adds.push_back(p);
    };
    cb.gone = [this](const WatchGone& g) {
      if (g.key == self) return;
      std::lock_guard lk(mu);
      gones.push_back(g);
    };
    cb.synced = [this](uint64_t gen, size_t) {
      std::lock_guard lk(mu);
      syncs.push_back(gen);
    };
    cb.disconnected = [this](const Error&, std::chrono::milliseconds) {
      std::lock_guard lk(mu);
      ++disconnects;
    };
    return cb;
  }
  size_t sync_count() {
    std::lock_guard lk(mu);
    return syncs.size();
  }
};

TEST(WatchLoop, ReportsInitialListLiveChangesAndSyntheticGoneAfterReconnect) {
  const MeshKey psk = mesh_key_of('e');
  const NodePrivate relay_key = NodePrivate::generate();
  const uint16_t port = free_loopback_ports(1)[0];
  auto start = [&] {
    ServerOptions o;
    o.private_key = relay_key;
    o.listen_addr = "127.0.0.1:" + std::to_string(port);
    o.threads = 1;
    o.mesh_key = psk;
    auto s = Server::start(std::move(o));
    EXPECT_TRUE(s) << s.error().message;
    return s ? std::move(*s) : nullptr;
  };
  auto relay = start();
  ASSERT_TRUE(relay);
  const std::string url = url_of(port);
  auto stays = make_client(url, NodePrivate::generate());
  auto leaves = make_client(url, NodePrivate::generate());
  ASSERT_TRUE(stays->connect());
  ASSERT_TRUE(leaves->connect());

  auto watcher = make_client(url, NodePrivate::generate(), psk);
  Recorder rec;
  rec.self = watcher->self_public_key();
  WatchOptions wo;
  // Long enough for `stays` to be back on the restarted relay before the watcher returns.
  wo.min_backoff = 1000ms;
  wo.stale_after = 0ms;  // only the resync may drop peers
  auto loop = WatchLoop::start(*watcher, rec.callbacks(), wo);
  ASSERT_TRUE(eventually([&] { return rec.sync_count() == 1; }));
  {
    std::lock_guard lk(rec.mu);
    ASSERT_EQ(rec.adds.size(), 2u);
    for (auto& a : rec.adds) {
      EXPECT_TRUE(a.has_endpoint);
      EXPECT_EQ(a.endpoint().rfind("127.0.0.1:", 0), 0u) << a.endpoint();
      EXPECT_EQ(a.flags, peer_present_flags::kIsRegular);
    }
  }
  // A live arrival.
  auto late = make_client(url, NodePrivate::generate());
  ASSERT_TRUE(late->connect());
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lk(rec.mu);
    return rec.adds.size() == 3;
  }));
  late->close();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lk(rec.mu);
    return rec.gones.size() == 1;
  }));
  {
    std::lock_guard lk(rec.mu);
    EXPECT_EQ(rec.gones[0].key, late->self_public_key());
    EXPECT_FALSE(rec.gones[0].synthetic);
  }

  // Restart the relay: the watcher reconnects; `stays` comes back, `leaves` does not.
  relay.reset();
  relay = start();
  ASSERT_TRUE(relay);
  // connect() is a no-op until `stays` has noticed the restart: wait for a new generation.
  const uint64_t gen = stays->generation();
  ASSERT_TRUE(eventually([&] { return stays->connect() && stays->generation() > gen; }));
  ASSERT_TRUE(eventually([&] { return rec.sync_count() == 2; }));
  // Under load the watcher may resync before `stays` is back: then `stays` is dropped
  // (synthetic) and re-added live. Either way it ends up present, and `leaves` is gone.
  auto count = [&](const auto& events, const NodePublic& key) {
    return std::count_if(events.begin(), events.end(), [&](const auto& e) { return e.key == key; });
  };
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lk(rec.mu);
    const auto key = stays->self_public_key();
    return count(rec.adds, key) > count(rec.gones, key);
  }));
  loop->stop();
  std::lock_guard lk(rec.mu);
  EXPECT_GE(rec.disconnects, 1);
  ASSERT_GE(rec.gones.size(), 2u);
  EXPECT_EQ(rec.gones[0].key, late->self_public_key());
  const auto it = std::find_if(rec.gones.begin() + 1, rec.gones.end(),
                               [&](const auto& g) { return g.key == leaves->self_public_key(); });
  ASSERT_NE(it, rec.gones.end());
  EXPECT_TRUE(it->synthetic);
  EXPECT_EQ(it->reason, PeerGoneReason::kMeshConnBroke);
  EXPECT_EQ(count(rec.gones, leaves->self_public_key()), 1);
}

// ---- derp-watch

TEST(DerpWatch, OncePrintsPeerListAsJsonAndText) {
  const MeshKey psk = mesh_key_of('f');
  ServerOptions o;
  o.mesh_key = psk;
  auto relay = start_relay(std::move(o));
  ASSERT_TRUE(relay);
  const std::string url = "http://" + relay->local_address() + "/derp";
  auto c = make_client(url, NodePrivate::generate());
  ASSERT_TRUE(c->connect());
  const std::string key = c->self_public_key().to_string();

  auto r = run_tool("derp-watch", {url, "--mesh-key", psk.hex(), "--once", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  EXPECT_EQ(lines[0]["schema"], 1);
  EXPECT_EQ(lines[0]["event"], "peer");
  EXPECT_EQ(lines[0]["key"], key);
  EXPECT_EQ(lines[0]["endpoint"], c->local_addr().value());
  EXPECT_EQ(lines[0]["flags"], 1);
  EXPECT_EQ(lines[1]["event"], "synced");
  EXPECT_EQ(lines[1]["peers"], 1);
  EXPECT_EQ(lines[1]["server_key"], relay->public_key().to_string());

  r = run_tool("derp-watch", {url, "--mesh-key", psk.hex(), "--once"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(key + " " + c->local_addr().value() + " flags=0x01(regular)"),
            std::string::npos)
      << r.out;
}

TEST(DerpWatch, RefusedWithoutOrWithWrongKey) {
  ServerOptions o;
  o.mesh_key = mesh_key_of('1');
  auto relay = start_relay(std::move(o));
  ASSERT_TRUE(relay);
  const std::string url = "http://" + relay->local_address() + "/derp";
  auto r = run_tool("derp-watch", {url, "--once"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  r = run_tool("derp-watch", {url, "--once", "--mesh-key", mesh_key_of('2').hex(), "--json"});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_NE(r.err.find("wrong mesh key"), std::string::npos) << r.err;
  r = run_tool("derp-watch", {"http://127.0.0.1:1/derp", "--once", "--timeout", "1s",
                              "--mesh-key", mesh_key_of('2').hex()});
  EXPECT_EQ(r.exit_code, 4) << r.err;
}

TEST(DerpWatch, LiveEventsWithCount) {
  const MeshKey psk = mesh_key_of('3');
  ServerOptions o;
  o.mesh_key = psk;
  auto relay = start_relay(std::move(o));
  ASSERT_TRUE(relay);
  const std::string url = "http://" + relay->local_address() + "/derp";
  Process p(tool_path("derp-watch"),
            {url, "--mesh-key", psk.hex(), "--json", "--count", "2", "--timeout", "20s"});
  ASSERT_TRUE(p.wait_for_line("\"synced\"", kWait, Process::Stream::kStdout)) << p.err();
  auto c = make_client(url, NodePrivate::generate());
  ASSERT_TRUE(c->connect());
  ASSERT_TRUE(p.wait_for_line("\"add\"", kWait, Process::Stream::kStdout)) << p.err();
  c->close();
  auto r = p.wait(kWait);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(lines[1]["event"], "add");
  EXPECT_EQ(lines[1]["key"], c->self_public_key().to_string());
  EXPECT_TRUE(lines[1].contains("time"));
  EXPECT_EQ(lines[2]["event"], "gone");
  EXPECT_EQ(lines[2]["reason"], "disconnected");
  EXPECT_EQ(lines[2]["synthetic"], false);
}

// derp-watch dials TLS relays with the shared flags: a private CA (--ca-file), a pin of the
// relay's certificate (--cert-name sha256-raw:HEX), or no verification (--insecure). Without
// them the certificate is not trusted: exit 5 (tls).
// A TLS relay (certificate for localhost from a private CA, in a temporary cert dir) with a
// mesh key, for the derp-watch TLS tests.
struct WatchTlsRelay {
  explicit WatchTlsRelay(const MeshKey& psk) {
    char tmpl[] = "/tmp/derp-watch-tls-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return;
    dir = tmpl;
    const test::TestCa ca = test::make_test_ca();
    const test::TestCert leaf = test::make_cert_signed_by(ca, {});
    std::ofstream(dir + "/localhost.crt") << leaf.cert_pem;
    std::ofstream(dir + "/localhost.key") << leaf.key_pem;
    ca_file = test::write_temp_file("watch-ca.pem", ca.cert_pem);
    ServerOptions o;
    o.mesh_key = psk;
    o.cert_mode = "manual";
    o.cert_dir = dir;
    o.hostname = "localhost";
    relay = start_relay(std::move(o));
  }
  ~WatchTlsRelay() {
    relay.reset();
    if (!dir.empty()) std::filesystem::remove_all(dir);
  }
  std::string dir;
  std::string ca_file;
  std::unique_ptr<Server> relay;
};

TEST(DerpWatch, TlsRelayNeedsCaFilePinOrInsecure) {
  const MeshKey psk = mesh_key_of('7');
  WatchTlsRelay tls(psk);
  auto& relay = tls.relay;
  const std::string& ca_file = tls.ca_file;
  ASSERT_TRUE(relay);
  ASSERT_TRUE(relay->tls());
  const std::string url = "https://" + relay->local_address() + "/derp";

  ClientOptions co;
  co.private_key = NodePrivate::generate();
  co.server_url = url;
  co.ca_file = ca_file;
  auto c = Client::create(std::move(co));
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->connect());
  const std::string key = (*c)->self_public_key().to_string();

  // --once retries a failing connect until --timeout, then exits with the last error's code.
  auto r =
      run_tool("derp-watch", {url, "--mesh-key", psk.hex(), "--once", "--json", "--timeout", "1s"});
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  r = run_tool("derp-watch", {url, "--mesh-key", psk.hex(), "--once", "--json", "--timeout", "1s",
                              "--cert-name", "sha256-raw:" + std::string(64, '0')});
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  const std::vector<std::vector<std::string>> good = {
      {"--ca-file", ca_file}, {"--cert-name", relay->cert_pin()}, {"--insecure"}};
  for (const auto& flags : good) {
    std::vector<std::string> args = {url, "--mesh-key", psk.hex(), "--once", "--json"};
    args.insert(args.end(), flags.begin(), flags.end());
    r = run_tool("derp-watch", args);
    ASSERT_EQ(r.exit_code, 0) << flags[0] << ": " << r.err;
    auto lines = json_lines(r.out);
    ASSERT_EQ(lines.size(), 2u) << r.out;
    EXPECT_EQ(lines[0]["key"], key);
    EXPECT_EQ(lines[1]["event"], "synced");
  }

  // --check-mesh dials too: one TLS relay, a client on it sending to another on it.
  r = run_tool("derp-watch", {"--check-mesh", url, "--json", "--timeout", "3s"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  r = run_tool("derp-watch",
               {"--check-mesh", url, "--json", "--ca-file", ca_file, "--mesh-key", psk.hex()});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["pairs"].size(), 1u);
  EXPECT_EQ(j["pairs"][0]["delivered"], true);
  EXPECT_EQ(j["views_agree"], true);
}

// With --derp-map, each node is verified by its own CertName (or InsecureForTests), not by the
// shared --cert-name, which is refused.
TEST(DerpWatch, MapNodesAreVerifiedByTheirCertName) {
  const MeshKey psk = mesh_key_of('8');
  WatchTlsRelay tls(psk);
  ASSERT_TRUE(tls.relay);
  const uint16_t port = tls.relay->port();
  auto region_with = [&](const nlohmann::json& tls_fields, const std::string& name) {
    // HostName: the certificate's name (a pinned certificate must still be valid for it, §6.3),
    // dialled at the IPv4 field.
    nlohmann::json node = {{"Name", "7t"},        {"RegionID", 7},   {"HostName", "localhost"},
                           {"IPv4", "127.0.0.1"}, {"IPv6", "none"}, {"DERPPort", port}};
    node.update(tls_fields);
    nlohmann::json map = {{"Regions",
                           {{"7", {{"RegionID", 7}, {"Nodes", nlohmann::json::array({node})}}},
                            {"8",
                             {{"RegionID", 8},
                              {"Nodes", {{{"Name", "8s"}, {"RegionID", 8},
                                          {"HostName", "stun.invalid"}, {"STUNOnly", true}}}}}}}}};
    return write_temp_file(name, map.dump());
  };
  auto watch = [&](const std::string& map, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--derp-map", map,  "--region", "7", "--mesh-key",
                                     psk.hex(),    "--once", "--json", "--timeout", "2s"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_tool("derp-watch", args);
  };
  const std::string pinned =
      region_with(nlohmann::json::object({{"CertName", tls.relay->cert_pin()}}), "watch-pinned.json");
  auto r = watch(pinned);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_EQ(lines[0]["event"], "synced");
  EXPECT_EQ(lines[0]["node"], "7t");
  EXPECT_EQ(lines[0]["server"], "https://localhost:" + std::to_string(port) + "/derp");

  r = watch(region_with(nlohmann::json::object({{"InsecureForTests", true}}), "watch-insecure.json"));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // A wrong pin, or no way to trust the certificate: the TLS layer's exit code.
  r = watch(region_with(nlohmann::json::object({{"CertName", "sha256-raw:" + std::string(64, '0')}}),
                        "watch-badpin.json"));
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  r = watch(region_with(nlohmann::json::object(), "watch-untrusted.json"));
  EXPECT_EQ(r.exit_code, 5) << r.out << r.err;
  // The hint points at the map's CertName, not at --cert-name (refused with a map).
  EXPECT_NE(r.err.find("pin it with the node's CertName (sha256-raw:HEX) in the DERP map"),
            std::string::npos)
      << r.err;
  EXPECT_NE(json_lines(r.out).back()["error"]["hint"].get<std::string>().find("CertName"),
            std::string::npos)
      << r.out;
  // --check-mesh dials the region's node the same way.
  r = run_tool("derp-watch", {"--check-mesh", "--derp-map", pinned, "--region", "7", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["relays"][0]["node"], "7t");

  // Usage: --cert-name with a map, a region of STUN-only nodes, a region not in the map,
  // SERVERs and a map together.
  for (const auto& [args, needle] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--cert-name", "localhost"}, "--cert-name does not apply to --derp-map"},
           {{"--region", "8"}, "--region 8: no non-STUNOnly nodes"},
           {{"--region", "9"}, "--region 9: not in the DERP map"},
           {{"https://127.0.0.1:1/derp"}, "give either SERVER or --derp-map, not both"},
       }) {
    std::vector<std::string> full = {"--derp-map", pinned, "--mesh-key", psk.hex(), "--once"};
    if (args[0] != "--region") full.insert(full.end(), {"--region", "7"});
    full.insert(full.end(), args.begin(), args.end());
    auto u = run_tool("derp-watch", full);
    EXPECT_EQ(u.exit_code, 2) << needle << ": " << u.err;
    EXPECT_NE(u.err.find(needle), std::string::npos) << u.err;
  }
}

TEST_F(Mesh3, DerpWatchShowsEachRelayAndMergedView) {
  auto a = make_client(url_of(ports_[0]), NodePrivate::generate());
  ASSERT_TRUE(a->connect());
  auto r = run_tool("derp-watch", {url_of(ports_[0]), url_of(ports_[1]), "--mesh-key", psk_.hex(),
                                   "--once", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = json_lines(r.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back()["event"], "merged");
  bool found = false;
  for (auto& k : lines.back()["keys"]) {
    if (k["key"] == a->self_public_key().to_string()) {
      found = true;
      EXPECT_EQ(k["servers"].size(), 1u);
      EXPECT_EQ(k["conflict"], false);
    }
  }
  EXPECT_TRUE(found) << r.out;
}

// A DERP map region of the three relays (plus a STUN-only node, which is not a relay): node
// i at 127.0.0.1:ports_[i] under a name that does not resolve, so only the IPv4 field dials it.
std::string mesh_region_map(const std::vector<uint16_t>& ports) {
  nlohmann::json nodes = nlohmann::json::array();
  nodes.push_back({{"Name", "900stun"}, {"RegionID", 900}, {"HostName", "stun.invalid"},
                   {"STUNOnly", true}});
  for (size_t i = 0; i < ports.size(); ++i) {
    nodes.push_back({{"Name", "900" + std::string(1, char('a' + i))},
                     {"RegionID", 900},
                     {"HostName", "node" + std::to_string(i) + ".invalid"},
                     {"IPv4", "127.0.0.1"},
                     {"IPv6", "none"},
                     {"DERPPort", ports[i]}});
  }
  nlohmann::json map = {
      {"Regions", {{"900", {{"RegionID", 900}, {"RegionCode", "mesh"}, {"Nodes", nodes}}}}}};
  return write_temp_file("mesh-region.json", map.dump());
}

// Go's TS_DEBUG_USE_DERP_HTTP for one test: the map's nodes over http:// (plain relays).
struct MeshPlainRegionNodes {
  MeshPlainRegionNodes() { ::setenv("TS_DEBUG_USE_DERP_HTTP", "1", 1); }
  ~MeshPlainRegionNodes() { ::unsetenv("TS_DEBUG_USE_DERP_HTTP"); }
};

// derp-watch --derp-map M --region ID watches every DERP node of the region (not the STUN-only
// one), each named by its Name, and --check-mesh checks them as a mesh.
TEST_F(Mesh3, DerpWatchTakesEveryNodeOfAMapRegion) {
  MeshPlainRegionNodes plain;
  const std::string map = mesh_region_map({ports_.begin(), ports_.end()});
  auto a = make_client(url_of(ports_[1]), NodePrivate::generate());
  ASSERT_TRUE(a->connect());
  auto r = run_tool("derp-watch", {"--derp-map", map, "--region", "900", "--mesh-key", psk_.hex(),
                                   "--once", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, nlohmann::json> synced;
  for (auto& l : json_lines(r.out)) {
    if (l["event"] == "synced") synced[l["node"]] = l;
  }
  ASSERT_EQ(synced.size(), 3u) << r.out;
  for (int i = 0; i < 3; ++i) {
    const std::string node = "900" + std::string(1, char('a' + i));
    ASSERT_TRUE(synced.count(node)) << node << ": " << r.out;
    EXPECT_EQ(synced[node]["server"],
              "http://node" + std::to_string(i) + ".invalid:" + std::to_string(ports_[i]) + "/derp");
    EXPECT_EQ(synced[node]["server_key"], keys_[i].public_key().to_string());
  }
  const auto lines = json_lines(r.out);
  ASSERT_EQ(lines.back()["event"], "merged") << r.out;
  bool found = false;
  for (auto& k : lines.back()["keys"]) {
    if (k["key"] == a->self_public_key().to_string()) {
      found = true;
      EXPECT_EQ(k["servers"], nlohmann::json::array({"900b"})) << k;
    }
  }
  EXPECT_TRUE(found) << r.out;

  // The text view names nodes too.
  auto text = run_tool("derp-watch", {"--derp-map", map, "--region", "900", "--mesh-key",
                                      psk_.hex(), "--once"});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find("# node 900c http://node2.invalid:" + std::to_string(ports_[2])),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("900b " + a->self_public_key().to_string()), std::string::npos)
      << text.out;

  auto check = run_tool("derp-watch", {"--check-mesh", "--derp-map", map, "--region", "900",
                                       "--mesh-key", psk_.hex(), "--json"});
  ASSERT_EQ(check.exit_code, 0) << check.out << check.err;
  auto j = nlohmann::json::parse(check.out);
  EXPECT_EQ(j["pairs"].size(), 9u);
  EXPECT_EQ(j["views_agree"], true) << check.out;
  ASSERT_EQ(j["relays"].size(), 3u);
  EXPECT_EQ(j["relays"][0]["node"], "900a");
  EXPECT_EQ(j["relays"][2]["server_key"], keys_[2].public_key().to_string());
}

// A stopped node of the region fails its pairs, named by node.
TEST_F(Mesh3, DerpWatchCheckOfAMapRegionNamesTheStoppedNode) {
  MeshPlainRegionNodes plain;
  const std::string map = mesh_region_map({ports_.begin(), ports_.end()});
  relays_[2].reset();
  auto r = run_tool("derp-watch", {"--check-mesh", "--derp-map", map, "--region", "900",
                                   "--timeout", "1s"},
                    "", 60s);
  ASSERT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("[2] node 900c http://node2.invalid:" + std::to_string(ports_[2]) +
                       "/derp UNREACHABLE"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.err.find("relay 2 (node 900c) unreachable: "), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("failing pairs: 0->2 1->2 2->0 2->1 2->2\n"), std::string::npos) << r.out;
}

TEST_F(Mesh3, CheckMeshPassesOnAHealthyMesh) {
  std::vector<std::string> args = {"--check-mesh", "--mesh-key", psk_.hex(), "--json"};
  for (auto p : ports_) args.push_back(url_of(p));
  auto r = run_tool("derp-watch", args);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["pairs"].size(), 9u);
  for (auto& p : j["pairs"]) EXPECT_EQ(p["delivered"], true) << p;
  EXPECT_EQ(j["views_agree"], true) << r.out;
  EXPECT_TRUE(j["failing_pairs"].empty());
}

TEST_F(Mesh3, CheckMeshNamesPairsOfARelayWithTheWrongPsk) {
  relays_[2].reset();
  start(2, mesh_key_of('9'));
  std::vector<std::string> args = {"--check-mesh", "--mesh-key", psk_.hex(), "--timeout", "2s"};
  for (auto p : ports_) args.push_back(url_of(p));
  auto r = run_tool("derp-watch", args, "", 60s);
  ASSERT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("failing pairs: 0->2 1->2 2->0 2->1\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peer views: DISAGREE"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("failing pairs: 0->2, 1->2, 2->0, 2->1"), std::string::npos) << r.err;
}

// A relay that sends PeerPresent without flags (an older derper) cannot say which connections
// are mesh links: its view is unknown, not a disagreement, though its links are up.
TEST_F(Mesh3, CheckMeshSaysUnknownForARelayWithoutPeerPresentFlags) {
  relays_[0].reset();
  start(0, psk_, /*peer_present_flags=*/false);
  ASSERT_TRUE(wait_mesh_up());
  std::vector<std::string> args = {"--check-mesh", "--mesh-key", psk_.hex()};
  for (auto p : ports_) args.push_back(url_of(p));
  auto text = run_tool("derp-watch", args, "", 60s);
  ASSERT_EQ(text.exit_code, 0) << text.out << text.err;
  EXPECT_EQ(text.out.find("DISAGREE"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("peer views: agree where known\n  relay 0: mesh view unknown (its "
                          "PeerPresent frames carry no flags"),
            std::string::npos)
      << text.out;
  args.push_back("--json");
  auto r = run_tool("derp-watch", args, "", 60s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["views_agree"], true) << r.out;
  EXPECT_EQ(j["views_unknown"], nlohmann::json::array({0})) << r.out;
  EXPECT_EQ(j["views"][0]["mesh_view"], "unknown") << r.out;
  EXPECT_TRUE(j["views"][0]["missing_mesh_links_from"].is_null()) << r.out;
  EXPECT_EQ(j["views"][1]["mesh_view"], "agree") << r.out;
}

TEST_F(Mesh3, CheckMeshNamesPairsOfAStoppedRelay) {
  relays_[1].reset();
  std::vector<std::string> args = {"--check-mesh", "--json", "--timeout", "2s"};
  for (auto p : ports_) args.push_back(url_of(p));
  auto r = run_tool("derp-watch", args, "", 60s);
  ASSERT_EQ(r.exit_code, 1) << r.out << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["failing_pairs"],
            nlohmann::json({"0->1", "1->0", "1->1", "1->2", "2->1"}));
  EXPECT_EQ(j["relays"][1]["error"]["layer"], "connect");
  EXPECT_EQ(j["views_checked"], false);
}

// ---- --check-mesh on a terminal: a progress line erased before the matrix, coloured verdicts.

TEST_F(Mesh3, CheckMeshOnATerminalShowsProgressAndColoursTheVerdicts) {
  std::vector<std::string> args = {"--check-mesh", "--mesh-key", psk_.hex()};
  for (auto p : ports_) args.push_back(url_of(p));
  auto tty = run_tool_on_pty("derp-watch", args);
  ASSERT_EQ(tty.exit_code, 0) << tty.bytes;
  EXPECT_NE(tty.bytes.find("\r\x1b[Kderp-watch: mesh check: connecting to 3 relay(s)"),
            std::string::npos)
      << tty.bytes;
  EXPECT_NE(tty.bytes.find("\r\x1b[Kmesh check of 3 relay(s):"), std::string::npos)
      << "erased before the result: " << tty.bytes;
  EXPECT_NE(tty.bytes.find("peer views: \x1b[32magree\x1b[0m"), std::string::npos) << tty.bytes;
  EXPECT_NE(tty.bytes.find("\x1b[32mall pairs deliver\x1b[0m"), std::string::npos) << tty.bytes;
  for (const auto& [env, flag] : std::vector<std::pair<EnvChanges, std::string>>{
           {{{"NO_COLOR", "1"}}, ""}, {{}, "--no-color"}}) {
    std::vector<std::string> a = args;
    if (!flag.empty()) a.push_back(flag);
    auto plain = run_tool_on_pty("derp-watch", a, env);
    EXPECT_EQ(plain.exit_code, 0) << plain.bytes;
    EXPECT_NE(plain.bytes.find("peer views: agree"), std::string::npos) << plain.bytes;
    EXPECT_NE(plain.bytes.find("all pairs deliver"), std::string::npos) << plain.bytes;
    EXPECT_EQ(plain.bytes.find("m\x1b[0m"), std::string::npos) << plain.bytes;
    EXPECT_EQ(plain.bytes.find("\x1b[32m"), std::string::npos) << plain.bytes;
  }
  // Piped: exactly today's text; --json on the terminal: the JSON line alone.
  auto piped = run_tool("derp-watch", args);
  EXPECT_EQ(piped.exit_code, 0);
  EXPECT_EQ(piped.err, "");
  EXPECT_EQ(piped.out.find("\x1b"), std::string::npos) << piped.out;
  args.push_back("--json");
  auto json_tty = run_tool_on_pty("derp-watch", args);
  EXPECT_EQ(json_tty.exit_code, 0);
  EXPECT_EQ(json_tty.bytes.find("\x1b"), std::string::npos) << json_tty.bytes;
  EXPECT_EQ(json_tty.bytes.rfind("{", 0), 0u) << json_tty.bytes;
}

TEST_F(Mesh3, CheckMeshOnATerminalErasesItsProgressAndPaintsFailures) {
  relays_[1].reset();
  std::vector<std::string> args = {"--check-mesh", "--timeout", "2s"};
  for (auto p : ports_) args.push_back(url_of(p));
  auto tty = run_tool_on_pty("derp-watch", args, {}, 60s);
  ASSERT_EQ(tty.exit_code, 1) << tty.bytes;
  // Relay 1 is named in the relay list (the failure line says why, as its only stderr line);
  // the progress line is erased before the list.
  EXPECT_NE(tty.bytes.find("\r\x1b[Kmesh check of 3 relay(s):"), std::string::npos) << tty.bytes;
  EXPECT_NE(tty.bytes.find("derp-watch: \x1b[1;31mfailing pairs: 0->1, 1->0, 1->1, 1->2, 2->1; "
                           "relay 1 unreachable: connect to 127.0.0.1:" +
                           std::to_string(ports_[1])),
            std::string::npos)
      << tty.bytes;
  EXPECT_NE(tty.bytes.find("\x1b[1;31m      FAIL\x1b[0m"), std::string::npos) << tty.bytes;
  EXPECT_NE(tty.bytes.find("\x1b[1;31mfailing pairs:\x1b[0m 0->1 1->0 1->1 1->2 2->1"),
            std::string::npos)
      << tty.bytes;
}

}  // namespace
}  // namespace derp::test
