// derp-serve's relay behaviour beyond routing: receive token bucket, accept limit, admission
// (allow-keys, admission URL), graceful restart, health, fault injection, status page and
// /bootstrap-dns, derper-style flags. Real relays and clients on 127.0.0.1.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "derp/client.h"
#include "derp/server.h"
#include "support/http_stub.h"
#include "support/process.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Client> client_for(const Server& relay, NodePrivate key = NodePrivate::generate()) {
  ClientOptions o;
  o.private_key = key;
  o.server_url = "http://127.0.0.1:" + std::to_string(relay.port()) + "/derp";
  o.connect_timeout = 5s;
  auto c = Client::create(std::move(o));
  EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
  return c.ok() ? std::move(*c) : nullptr;
}

// The next message of type T, skipping others; nullopt on error or after 32 others.
template <typename T>
std::optional<T> next_of(Client& c, std::chrono::milliseconds t = 5s) {
  for (int i = 0; i < 32; ++i) {
    auto m = c.recv(t);
    if (!m.ok()) return std::nullopt;
    if (auto* v = std::get_if<T>(&*m)) return *v;
  }
  return std::nullopt;
}

int64_t counter(const Server& s, const std::string& name) {
  auto c = s.counters();
  auto it = c.find(name);
  return it == c.end() ? -1 : it->second;
}

// Polls the relay's counter (short yields) until it reaches `want` or the deadline passes.
bool wait_counter(const Server& s, const std::string& name, int64_t want,
                  std::chrono::milliseconds t = kWait) {
  const auto deadline = Clock::now() + t;
  while (Clock::now() < deadline) {
    if (counter(s, name) >= want) return true;
    std::this_thread::sleep_for(2ms);
  }
  return counter(s, name) >= want;
}

std::string http_get(uint16_t port, const std::string& req) {
  RawConn raw(port);
  EXPECT_TRUE(raw.write(req));
  auto res = raw.read_http_response();
  return res.value_or("");
}

std::string body_of(const std::string& res) {
  auto p = res.find("\r\n\r\n");
  return p == std::string::npos ? "" : res.substr(p + 4);
}

// ---- Limits

TEST(RelayLimits, TokenBucketSlowsAFloodingClientButNotAnother) {
  constexpr int64_t kRate = 200000;
  ServerOptions o;
  o.client_rate_bytes_per_second = kRate;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto b = DerpConn::connect(relay->port(), NodePrivate::generate(), relay->public_key());
  auto a = DerpConn::connect(relay->port(), NodePrivate::generate(), relay->public_key());
  auto c = DerpConn::connect(relay->port(), NodePrivate::generate(), relay->public_key());
  ASSERT_TRUE(a && b && c);

  constexpr int kTotal = 4000;  // 4 MB: far more than the test lets through
  std::atomic<int> sent{0};
  const auto t0 = Clock::now();
  std::thread flood([&] {
    std::vector<uint8_t> pkt(1000, 0x42);
    for (int i = 0; i < kTotal; ++i) {
      if (!a->send_packet(b->public_key(), pkt)) return;
      sent.fetch_add(1);
    }
  });
  // The relay read 300 KB from A: never faster than burst + rate × elapsed.
  const int64_t kWant = 300000;
  const bool reached = wait_counter(*relay, "bytes_received", kWant, 30s);
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t got = counter(*relay, "bytes_received");
  EXPECT_TRUE(reached) << got;
  EXPECT_LE(static_cast<double>(got), 65568 + kRate * elapsed + 70000)
      << "relay read " << got << " bytes in " << elapsed << " s";
  EXPECT_GT(counter(*relay, "rate_limit_per_client_waited"), 0);

  // C is not held back by A's empty bucket: 50 KB and a ping barrier go straight through.
  std::vector<uint8_t> small(1000, 0x43);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(c->send_packet(b->public_key(), small));
  EXPECT_TRUE(c->sync().has_value());
  // (A's socket buffers may hold its whole flood; what matters is what the relay has read.)
  EXPECT_LT(counter(*relay, "bytes_received"), int64_t{kTotal} * 1000)
      << "the relay read A's whole flood: it was not limited";

  ::shutdown(a->raw().fd(), SHUT_RDWR);  // unblocks the flood thread's send
  flood.join();
  std::printf("[ figures ] token bucket %lld B/s: relay read %lld bytes in %.2f s (%.0f B/s)\n",
              static_cast<long long>(kRate), static_cast<long long>(got), elapsed,
              static_cast<double>(got) / elapsed);
}

// derper never advertises its bucket, and Go clients drop sends over an advertised one: the
// bucket is in ServerInfo only with advertise_client_rate (derp-serve --advertise-client-rate).
TEST(RelayLimits, TokenBucketIsInServerInfoOnlyWhenAdvertised) {
  for (const bool advertise : {false, true}) {
    ServerOptions o;
    o.client_rate_bytes_per_second = 123456;
    o.client_rate_burst_bytes = 1000;  // raised to one largest frame
    o.advertise_client_rate = advertise;
    auto relay = start_relay(o);
    ASSERT_TRUE(relay);
    auto c = client_for(*relay);
    ASSERT_TRUE(c);
    auto info = next_of<ServerInfoMessage>(*c);
    ASSERT_TRUE(info);
    EXPECT_EQ(server_info_to_json(info->info),
              advertise ? R"({"version":2,"TokenBucketBytesPerSecond":123456,)"
                          R"("TokenBucketBytesBurst":65568})"
                        : R"({"version":2})")  // derper's, exactly
        << "advertise " << advertise;
  }
}

// PROTOCOL.md §7.6, waiting where Go drops: a burst over the advertised budget takes at least
// (bytes - burst) / rate and arrives whole and in order; the client counts its waits.
TEST(RelayLimits, ClientWaitsForAnAdvertisedTokenBucketAndLosesNothing) {
  constexpr int64_t kRate = 400000;
  constexpr int64_t kBurst = 65568;
  constexpr uint32_t kPackets = 40;
  constexpr size_t kSize = 10000;
  ServerOptions o;
  o.client_rate_bytes_per_second = kRate;
  o.client_rate_burst_bytes = kBurst;
  o.advertise_client_rate = true;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto a = client_for(*relay);
  auto b = client_for(*relay);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->connect().ok());
  auto a_info = next_of<ServerInfoMessage>(*a);
  ASSERT_TRUE(a_info);
  ASSERT_EQ(a_info->info.token_bucket_bytes_per_second, kRate);

  const auto t0 = Clock::now();
  for (uint32_t i = 0; i < kPackets; ++i) {
    std::vector<uint8_t> p(kSize, 0x5b);
    std::memcpy(p.data(), &i, sizeof i);
    ASSERT_TRUE(a->send(b->self_public_key(), p).ok()) << "packet " << i;
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  // Each send is charged its whole SendPacket frame: 5 + 32 + payload bytes.
  const double charged = static_cast<double>(kPackets * (5 + 32 + kSize));
  EXPECT_GE(elapsed, (charged - kBurst) / kRate * 0.95) << "the sends outran the bucket";
  const ClientStats stats = a->stats();
  EXPECT_GT(stats.send_rate_waits, 0u);
  EXPECT_GT(stats.send_rate_waited.count(), 0);
  for (uint32_t i = 0; i < kPackets; ++i) {
    auto got = next_of<ReceivedPacket>(*b, kWait);
    ASSERT_TRUE(got) << "packet " << i << " lost";
    uint32_t seq = 0;
    std::memcpy(&seq, got->data.data(), sizeof seq);
    EXPECT_EQ(seq, i);
    EXPECT_EQ(got->data.size(), kSize);
  }
  EXPECT_EQ(b->stats().send_rate_waits, 0u);  // B sent nothing
}

TEST(RelayLimits, AcceptLimitClosesConnectionsBeyondTheBurst) {
  ServerOptions o;
  o.accept_rate = 0.001;  // one new token every 1000 s: only the burst gets in
  o.accept_burst = 2;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  const std::string probe = "GET /derp/probe HTTP/1.1\r\nHost: x\r\n\r\n";
  EXPECT_EQ(http_get(relay->port(), probe).rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(http_get(relay->port(), probe).rfind("HTTP/1.1 200", 0), 0u);
  RawConn third(relay->port());
  ASSERT_TRUE(third.ok());
  EXPECT_TRUE(third.wait_closed());
  EXPECT_EQ(counter(*relay, "tls_listener_rejected_connections"), 1);
  EXPECT_EQ(counter(*relay, "accepts"), 2);
}

// ---- Admission

struct AdmissionCase {
  HttpStub::Answer answer;
  bool admitted;
};

std::unique_ptr<Server> relay_with_url(const std::string& url, bool fail_open, LogWatch& logs) {
  ServerOptions o;
  o.verify_client_url = url;
  o.verify_client_url_fail_open = fail_open;
  o.verify_client_timeout = 3s;
  o.log = logs.sink();
  return start_relay(o);
}

TEST(RelayAdmission, UrlAllowsOnlyOkWithAllowTrue) {
  std::atomic<bool> allow{true};
  HttpStub stub([&](const HttpStub::Seen&) {
    return HttpStub::Answer{200, allow ? R"({"Allow":true})" : R"({"Allow":false})"};
  });
  LogWatch logs;
  auto relay = relay_with_url(stub.url(), true, logs);
  ASSERT_TRUE(relay);
  const NodePrivate key = NodePrivate::generate();
  auto ok = client_for(*relay, key);
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->ping(5s).ok());
  auto reqs = stub.requests();
  // The start-up reachability check (HEAD), then the client's admission request.
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].method, "HEAD");
  reqs.erase(reqs.begin());
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].content_type, "application/json");
  auto j = nlohmann::json::parse(reqs[0].body);
  EXPECT_EQ(j["NodePublic"], key.public_key().to_string());
  EXPECT_EQ(j["Source"], "127.0.0.1");

  allow = false;
  auto denied = client_for(*relay);
  ASSERT_TRUE(denied);
  EXPECT_FALSE(denied->ping(3s).ok());
  EXPECT_TRUE(logs.wait_for("denied by the admission controller")) << logs.all();
  EXPECT_EQ(counter(*relay, "clients_refused_reason_verify_client_url"), 1);
}

TEST(RelayAdmission, UrlHttpErrorRefuses) {
  HttpStub stub([](const HttpStub::Seen&) { return HttpStub::Answer{500, "oops"}; });
  LogWatch logs;
  auto relay = relay_with_url(stub.url(), true, logs);
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  EXPECT_FALSE(c->ping(3s).ok());
  EXPECT_TRUE(logs.wait_for("HTTP 500")) << logs.all();
}

TEST(RelayAdmission, UnreachableUrlFailsOpenOrClosed) {
  // A port that was just free: nothing listens there.
  uint16_t dead_port = 0;
  {
    HttpStub gone([](const HttpStub::Seen&) { return HttpStub::Answer{}; });
    dead_port = gone.port();
  }
  const std::string url = "http://127.0.0.1:" + std::to_string(dead_port) + "/admit";
  {
    LogWatch logs;
    auto relay = relay_with_url(url, true, logs);
    ASSERT_TRUE(relay);
    auto c = client_for(*relay);
    EXPECT_TRUE(c->ping(5s).ok());
    EXPECT_TRUE(logs.wait_for("admission controller unreachable")) << logs.all();
  }
  {
    LogWatch logs;
    auto relay = relay_with_url(url, false, logs);
    ASSERT_TRUE(relay);
    auto c = client_for(*relay);
    EXPECT_FALSE(c->ping(3s).ok());
    EXPECT_TRUE(logs.wait_for("refused client")) << logs.all();
    EXPECT_EQ(counter(*relay, "clients_refused_reason_verify_client_url"), 1);
  }
}

size_t count_of(const std::string& text, std::string_view needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(RelayAdmission, UnreachableAtStartUpIsLoggedLoudly) {
  uint16_t dead_port = 0;
  {
    HttpStub gone([](const HttpStub::Seen&) { return HttpStub::Answer{}; });
    dead_port = gone.port();
  }
  LogWatch logs;
  auto relay = relay_with_url("http://127.0.0.1:" + std::to_string(dead_port) + "/admit", true, logs);
  ASSERT_TRUE(relay);
  // No client yet: the relay asked at start-up by itself.
  EXPECT_TRUE(logs.wait_for("WARNING: admission controller unreachable at start-up")) << logs.all();
  EXPECT_TRUE(logs.wait_for("clients are admitted UNCHECKED (fail-open")) << logs.all();
  EXPECT_EQ(counter(*relay, "admission_unreachable_requests"), 1);
  EXPECT_EQ(counter(*relay, "admission_fail_open_admits"), 0);
}

TEST(RelayAdmission, FailOpenOutageIsLoggedOnceCountedAndEnds) {
  // The controller hangs (no HTTP answer within the relay's timeout) until released, then
  // answers Allow: one outage, logged when it starts and when it ends, not per client.
  std::mutex mu;
  std::condition_variable cv;
  bool hang = true;
  HttpStub stub([&](const HttpStub::Seen&) {
    std::unique_lock lock(mu);
    cv.wait_for(lock, 5s, [&] { return !hang; });
    return HttpStub::Answer{200, R"({"Allow":true})"};
  });
  LogWatch logs;
  ServerOptions o;
  o.verify_client_url = stub.url();
  o.verify_client_timeout = 300ms;
  o.log = logs.sink();
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  ASSERT_TRUE(logs.wait_for("WARNING: admission controller unreachable")) << logs.all();
  auto first = client_for(*relay);
  ASSERT_TRUE(first);
  EXPECT_TRUE(first->ping(5s).ok());  // admitted unchecked
  auto second = client_for(*relay);
  ASSERT_TRUE(second);
  EXPECT_TRUE(second->ping(5s).ok());
  EXPECT_EQ(count_of(logs.all(), "WARNING: admission controller unreachable"), 1u) << logs.all();
  EXPECT_EQ(counter(*relay, "admission_fail_open_admits"), 2);
  {
    std::lock_guard lock(mu);
    hang = false;
  }
  cv.notify_all();
  auto third = client_for(*relay);
  ASSERT_TRUE(third);
  EXPECT_TRUE(third->ping(5s).ok());
  EXPECT_TRUE(logs.wait_for("answers again; 2 client(s) were admitted unchecked")) << logs.all();
  EXPECT_EQ(counter(*relay, "admission_fail_open_admits"), 2);
  EXPECT_EQ(counter(*relay, "admission_unreachable_requests"), 3);  // start-up + 2 clients
}

TEST(RelayAdmission, OnlyHttpUrlsAreAccepted) {
  for (const char* url : {"ftp://x/admit", "file:///etc/passwd", "x", "gopher://127.0.0.1/"}) {
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    o.listen_addr = "127.0.0.1:0";
    o.verify_client_url = url;
    auto s = Server::start(o);
    ASSERT_FALSE(s.ok()) << url;
    EXPECT_EQ(s.error().kind, ErrorKind::kUsage) << url;
    EXPECT_NE(s.error().message.find("want an http:// or https:// URL"), std::string::npos)
        << s.error().message;
  }
}

class ServeBinary : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-behaviour-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Starts derp-serve with `args` (plus a key file and no STUN unless given) and returns the
  // relay port, or 0.
  uint16_t start(std::vector<std::string> args) {
    args.insert(args.begin(), {"-c", dir_ + "/derper.key"});
    proc_ = std::make_unique<Process>(tool_path("derp-serve"), args);
    auto line = proc_->wait_for_line("listening on", 20s, Process::Stream::kStdout);
    if (!line) {
      ADD_FAILURE() << "no listening line: " << proc_->err();
      return 0;
    }
    std::smatch m;
    if (!std::regex_search(*line, m, std::regex("http://127\\.0\\.0\\.1:([0-9]+)/derp key (\\S+)"))) {
      ADD_FAILURE() << *line;
      return 0;
    }
    server_key_ = *NodePublic::parse_any(m[2].str());
    line_ = *line;
    return static_cast<uint16_t>(std::stoi(m[1].str()));
  }
  std::unique_ptr<Client> client(uint16_t port, NodePrivate key = NodePrivate::generate()) {
    ClientOptions o;
    o.private_key = key;
    o.server_url = "http://127.0.0.1:" + std::to_string(port) + "/derp";
    o.connect_timeout = 5s;
    auto c = Client::create(std::move(o));
    EXPECT_TRUE(c.ok());
    return c.ok() ? std::move(*c) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<Process> proc_;
  NodePublic server_key_;
  std::string line_;
};

TEST_F(ServeBinary, AllowKeysFileIsEnforcedAndReloadedOnSighup) {
  const NodePrivate a = NodePrivate::generate(), b = NodePrivate::generate();
  const std::string file = dir_ + "/allow.txt";
  std::ofstream(file) << "# only A\n" << a.public_key().to_string() << "\n";
  const uint16_t port = start({"-a", "127.0.0.1:0", "-stun=false", "--allow-keys", file});
  ASSERT_NE(port, 0);
  auto ca = client(port, a);
  auto cb = client(port, b);
  EXPECT_TRUE(ca->ping(5s).ok());
  EXPECT_FALSE(cb->ping(3s).ok());
  EXPECT_TRUE(proc_->wait_for_line("refused client " + b.public_key().to_string(), 5s))
      << proc_->err();

  std::ofstream(file) << b.public_key().to_string() << "  # now B\n";
  proc_->signal(SIGHUP);
  ASSERT_TRUE(proc_->wait_for_line("reloaded", 5s)) << proc_->err();
  auto cb2 = client(port, b);
  EXPECT_TRUE(cb2->ping(5s).ok());
  proc_->signal(SIGTERM);
  EXPECT_EQ(proc_->wait(10s).exit_code, 0);
}

TEST_F(ServeBinary, SigtermSendsServerRestartingThenEof) {
  const uint16_t port = start({"-a=127.0.0.1:0", "-stun=false", "-restart-reconnect-in", "250ms",
                               "-restart-try-for", "1m"});
  ASSERT_NE(port, 0);
  auto c = client(port);
  ASSERT_TRUE(c->ping(5s).ok());
  proc_->signal(SIGTERM);
  auto r = next_of<ServerRestartingMessage>(*c);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reconnect_in, 250ms);
  EXPECT_EQ(r->try_for, 60000ms);
  // Then the connection ends.
  bool ended = false;
  for (int i = 0; i < 8 && !ended; ++i) ended = !c->recv(5s).ok();
  EXPECT_TRUE(ended);
  EXPECT_EQ(proc_->wait(10s).exit_code, 0);
}

TEST_F(ServeBinary, TakesDerperFlagsWithOneDash) {
  const uint16_t port =
      start({"-a", "127.0.0.1:0", "-stun=false", "-verify-client-url-fail-open=false",
             "-accept-connection-limit", "100", "-accept-connection-burst=10",
             "-tcp-keepalive-time", "5m", "-tcp-user-timeout=10s", "-tcp-write-timeout", "3s",
             "-bootstrap-dns-names", "localhost"});
  ASSERT_NE(port, 0);
  EXPECT_EQ(line_.find(" stun "), std::string::npos) << line_;  // -stun=false honoured
  auto c = client(port);
  EXPECT_TRUE(c->ping(5s).ok());
  proc_->signal(SIGINT);
  EXPECT_EQ(proc_->wait(10s).exit_code, 0);
}

// --queue-wait reaches the relay: 0 restores derper's drop-oldest (no sender ever waits), so a
// flood into a one-loop relay drops at the receiver's full queue; a bad value is refused.
TEST_F(ServeBinary, QueueWaitFlagZeroIsDerpersDropOldest) {
  // The default: long enough that a receiver draining slowly under overload is not taken for
  // a stalled one (docs/BENCHMARKS.md, session 5).
  EXPECT_EQ(ServerOptions{}.queue_wait, 50ms);
  auto help = run_tool("derp-serve", {"--help"});
  EXPECT_NE(help.out.find("--queue-wait DURATION=50ms"), std::string::npos)
      << help.out;
  auto bad = run_tool("derp-serve", {"-c", dir_ + "/derper.key", "--queue-wait", "soon"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("--queue-wait"), std::string::npos) << bad.err;
  auto huge = run_tool("derp-serve", {"-c", dir_ + "/derper.key", "--tcp-rcvbuf", "4294967296"});
  EXPECT_EQ(huge.exit_code, 2) << huge.err;
  EXPECT_NE(huge.err.find("--tcp-rcvbuf"), std::string::npos) << huge.err;

  const uint16_t port =
      start({"-a", "127.0.0.1:0", "-stun=false", "--threads", "1", "--queue-wait", "0"});
  ASSERT_NE(port, 0);
  const NodePrivate ka = NodePrivate::generate(), kb = NodePrivate::generate();
  auto a = DerpConn::connect(port, ka, server_key_);
  auto b = DerpConn::connect(port, kb, server_key_);
  ASSERT_TRUE(a && b);
  const NodePublic kb_pub = kb.public_key();
  std::vector<uint8_t> flood;
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> p(kb_pub.bytes.begin(), kb_pub.bytes.end());
    p.resize(32 + 1200, 0x33);
    auto f = frame_bytes(FrameType::kSendPacket, p);
    flood.insert(flood.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(a->raw().write(flood));
  ASSERT_TRUE(a->sync());
  auto j = nlohmann::json::parse(
      body_of(http_get(port, "GET /debug/vars HTTP/1.1\r\nHost: x\r\n\r\n")), nullptr, false);
  ASSERT_TRUE(j.is_object() && j["derp"].is_object());
  EXPECT_EQ(j["derp"].value("send_queue_waits", int64_t{-1}), 0) << j.dump();
  EXPECT_GT(j["derp"]["counter_packets_dropped_reason"].value("queue_head", int64_t{0}), 0)
      << j.dump();
  proc_->signal(SIGTERM);
  EXPECT_EQ(proc_->wait(10s).exit_code, 0);
}

// --client-rate-* alone limits without telling anyone (derper's ServerInfo); only
// --advertise-client-rate puts the bucket in ServerInfo. --mesh-write-timeout is taken.
TEST_F(ServeBinary, ClientRateIsAdvertisedOnlyWithAdvertiseClientRate) {
  for (const bool advertise : {false, true}) {
    std::vector<std::string> args = {"-a", "127.0.0.1:0", "-stun=false",
                                     "--client-rate-bytes-per-sec", "100000",
                                     "--mesh-write-timeout", "45s"};
    if (advertise) args.push_back("--advertise-client-rate");
    const uint16_t port = start(args);
    ASSERT_NE(port, 0);
    auto c = client(port);
    auto info = next_of<ServerInfoMessage>(*c);
    ASSERT_TRUE(info);
    EXPECT_EQ(server_info_to_json(info->info),
              advertise ? R"({"version":2,"TokenBucketBytesPerSecond":100000,)"
                          R"("TokenBucketBytesBurst":65568})"
                        : R"({"version":2})");
    proc_->signal(SIGTERM);
    EXPECT_EQ(proc_->wait(10s).exit_code, 0);
  }
}

TEST_F(ServeBinary, UnsupportedDerperFlagIsRefusedByName) {
  for (const char* flag : {"-dev", "--verify-clients", "-derp=false", "-rate-config"}) {
    auto r = run_tool("derp-serve", {"-c", dir_ + "/derper.key", flag});
    EXPECT_EQ(r.exit_code, 2) << flag;
    std::string name = flag;
    name = name.substr(name.find_first_not_of('-'));
    name = name.substr(0, name.find('='));
    EXPECT_NE(r.err.find("derper flag -" + name + " is not supported"), std::string::npos)
        << r.err;
  }
  auto r = run_tool("derp-serve", {"-c", dir_ + "/derper.key", "--fault", "explode"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown fault"), std::string::npos) << r.err;
  r = run_tool("derp-serve", {"-c", dir_ + "/derper.key", "-a", "127.0.0.1:0", "-stun=false",
                              "--fault", "restart=1s"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("fault \"restart=1s\" cannot be applied at start"), std::string::npos)
      << r.err;
}

// ---- Restart, health, faults (in-process)

TEST(RelayFaults, GracefulStopSendsRestartingThenEof) {
  ServerOptions o;
  o.restart_reconnect_in = 2s;
  o.restart_try_for = 20s;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c->ping(5s).ok());
  relay->graceful_stop();
  auto r = next_of<ServerRestartingMessage>(*c);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reconnect_in, 2000ms);
  EXPECT_EQ(r->try_for, 20000ms);
}

TEST(RelayFaults, HealthGoesToEveryoneAndToLaterClients) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto c1 = client_for(*relay);
  ASSERT_TRUE(c1->ping(5s).ok());
  auto done = relay->apply_fault("health=relay overloaded");
  ASSERT_TRUE(done) << done.error().message;
  auto h = next_of<HealthMessage>(*c1);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->problem, "relay overloaded");
  auto c2 = client_for(*relay);
  auto h2 = next_of<HealthMessage>(*c2);
  ASSERT_TRUE(h2);
  EXPECT_EQ(h2->problem, "relay overloaded");
  relay->set_health("");
  auto cleared = next_of<HealthMessage>(*c1);
  ASSERT_TRUE(cleared);
  EXPECT_EQ(cleared->problem, "");
}

TEST(RelayFaults, RestartFaultSendsServerRestarting) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c->ping(5s).ok());
  ASSERT_TRUE(relay->apply_fault("restart=0ms,5s"));
  auto r = next_of<ServerRestartingMessage>(*c);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reconnect_in, 0ms);
  EXPECT_EQ(r->try_for, 5000ms);
  EXPECT_TRUE(c->ping(5s).ok());  // the fault only advises; the connection stays
}

TEST(RelayFaults, DropPercentDropsAndClearStops) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto a = client_for(*relay);
  auto b = client_for(*relay);
  ASSERT_TRUE(b->connect().ok());
  ASSERT_TRUE(relay->apply_fault("drop=100"));
  const std::vector<uint8_t> lost = {1}, kept = {2};
  ASSERT_TRUE(a->send(b->self_public_key(), lost).ok());
  EXPECT_TRUE(wait_counter(*relay, "packets_dropped_reason_fault_injected", 1));
  ASSERT_TRUE(relay->apply_fault("clear"));
  ASSERT_TRUE(a->send(b->self_public_key(), kept).ok());
  auto p = next_of<ReceivedPacket>(*b);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->data, kept);  // the dropped one never came

  // 50%: about half of 400 packets get through (generous bounds).
  ASSERT_TRUE(relay->apply_fault("drop=50"));
  const int64_t before = counter(*relay, "packets_dropped_reason_fault_injected");
  for (int i = 0; i < 400; ++i) ASSERT_TRUE(a->send(b->self_public_key(), lost).ok());
  ASSERT_TRUE(a->ping(5s).ok());  // the relay has read all 400
  const int64_t dropped = counter(*relay, "packets_dropped_reason_fault_injected") - before;
  EXPECT_GT(dropped, 100);
  EXPECT_LT(dropped, 300);
}

TEST(RelayFaults, LatencyDelaysEveryWrite) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c->ping(5s).ok());
  ASSERT_TRUE(relay->apply_fault("latency=300ms"));
  auto rtt = c->ping(5s);
  ASSERT_TRUE(rtt.ok());
  EXPECT_GE(*rtt, 300ms);  // a floor the relay's timer guarantees, not a speed goal
  ASSERT_TRUE(relay->apply_fault("latency=0"));
  std::printf("[ figures ] ping RTT with latency=300ms: %.1f ms\n",
              std::chrono::duration<double, std::milli>(*rtt).count());
}

TEST(RelayFaults, CloseFaultEndsThatPeersConnection) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto victim = client_for(*relay);
  auto other = client_for(*relay);
  ASSERT_TRUE(victim->ping(5s).ok());
  ASSERT_TRUE(other->ping(5s).ok());
  const uint64_t gen = victim->generation();
  ASSERT_TRUE(relay->apply_fault("close=" + victim->self_public_key().to_string()));
  bool ended = false;
  for (int i = 0; i < 8 && !ended; ++i) ended = !victim->recv(5s).ok();
  EXPECT_TRUE(ended);
  EXPECT_TRUE(other->ping(5s).ok());
  EXPECT_GE(victim->generation(), gen);
  auto unknown = relay->apply_fault("close=" + NodePrivate::generate().public_key().to_string());
  EXPECT_FALSE(unknown);
}

TEST(RelayFaults, StallStopsReadingFromOneClientOnly) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto stalled = client_for(*relay);
  auto other = client_for(*relay);
  ASSERT_TRUE(stalled->ping(5s).ok());
  ASSERT_TRUE(relay->apply_fault("stall=" + stalled->self_public_key().to_string()));
  EXPECT_FALSE(stalled->ping(1500ms).ok());  // the relay no longer reads its Ping
  EXPECT_TRUE(other->ping(5s).ok());
}

TEST(RelayFaults, ClearAndUnstallResumeAStalledReader) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto a = client_for(*relay);
  auto b = client_for(*relay);
  ASSERT_TRUE(a->ping(5s).ok());
  ASSERT_TRUE(b->ping(5s).ok());
  const std::string akey = a->self_public_key().to_string();

  // unstall= for one key: A's packet, sent while stalled, arrives once the relay reads again.
  ASSERT_TRUE(relay->apply_fault("stall=" + akey));
  const std::vector<uint8_t> held = {42};
  ASSERT_TRUE(a->send(b->self_public_key(), held).ok());
  EXPECT_FALSE(next_of<ReceivedPacket>(*b, 500ms).has_value());
  auto done = relay->apply_fault("unstall=" + akey);
  ASSERT_TRUE(done) << done.error().message;
  auto p = next_of<ReceivedPacket>(*b);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->data, held);
  EXPECT_TRUE(a->ping(5s).ok());

  // clear resumes every stalled reader.
  ASSERT_TRUE(relay->apply_fault("stall=" + akey));
  EXPECT_FALSE(a->ping(1s).ok());
  auto cleared = relay->apply_fault("clear");
  ASSERT_TRUE(cleared) << cleared.error().message;
  EXPECT_NE(cleared->find("1 stalled connection(s) resumed"), std::string::npos) << *cleared;
  EXPECT_TRUE(a->ping(5s).ok());
  EXPECT_FALSE(relay->apply_fault("unstall=" + NodePrivate::generate().public_key().to_string()));
}

TEST(RelayFaults, FaultsThatNeedConnectedClientsAreRefusedAtStart) {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.faults = {"drop=10", "latency=5ms", "stall=" + NodePrivate::generate().public_key().to_string()};
  auto s = Server::start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kUsage);
  EXPECT_NE(s.error().message.find("cannot be applied at start"), std::string::npos)
      << s.error().message;
}

TEST(RelayFaults, ChurnDropsAsDupClientUntilTheClientSpeaks) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto a = client_for(*relay);
  auto b = client_for(*relay);
  ASSERT_TRUE(a->ping(5s).ok());
  ASSERT_TRUE(b->ping(5s).ok());
  ASSERT_TRUE(relay->apply_fault("churn=" + b->self_public_key().to_string()));
  const std::vector<uint8_t> lost = {7}, kept = {8};
  ASSERT_TRUE(a->send(b->self_public_key(), lost).ok());
  EXPECT_TRUE(wait_counter(*relay, "packets_dropped_reason_dup_client", 1));
  ASSERT_TRUE(b->ping(5s).ok());  // any frame from B makes it the active connection again
  ASSERT_TRUE(a->send(b->self_public_key(), kept).ok());
  auto p = next_of<ReceivedPacket>(*b);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->data, kept);
}

TEST(RelayFaults, AdminEndpointIsPostOnly) {
  ServerOptions o;
  o.fault_endpoint = true;
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c->ping(5s).ok());
  const std::string res = http_get(
      relay->port(), "POST /debug/fault?health=via%20http HTTP/1.1\r\nHost: x\r\n"
                     "Content-Length: 0\r\n\r\n");
  EXPECT_EQ(res.rfind("HTTP/1.1 200", 0), 0u) << res;
  auto h = next_of<HealthMessage>(*c);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->problem, "via http");
  EXPECT_EQ(http_get(relay->port(), "GET /debug/fault?drop=5 HTTP/1.1\r\nHost: x\r\n\r\n")
                .rfind("HTTP/1.1 405", 0),
            0u);
  const std::string bad = http_get(
      relay->port(), "POST /debug/fault?drop=500 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(bad.rfind("HTTP/1.1 400", 0), 0u) << bad;
}

// ---- Endpoints

TEST(RelayEndpoints, StatusPageIsLiveFromStatusJsonWithVersionUptimeAndConnections) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  auto c = client_for(*relay);
  ASSERT_TRUE(c->ping(5s).ok());
  const std::string res = http_get(relay->port(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(res.rfind("HTTP/1.1 200", 0), 0u);
  const std::string body = body_of(res);
  EXPECT_NE(body.find("Tailscale"), std::string::npos);
  EXPECT_NE(body.find("<h2>Status</h2>"), std::string::npos) << body;
  EXPECT_NE(body.find("fetch(\"/status.json\""), std::string::npos) << body;
  const std::string js = http_get(relay->port(), "GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(js.rfind("HTTP/1.1 200", 0), 0u) << js;
  auto j = nlohmann::json::parse(body_of(js), nullptr, false);
  ASSERT_TRUE(j.is_object()) << js;
  EXPECT_FALSE(j["version"].get<std::string>().empty());
  EXPECT_GE(j["uptime_seconds"].get<int64_t>(), 0);
  EXPECT_EQ(j["clients"]["total"], 1) << js;
}

TEST(RelayEndpoints, BootstrapDnsAnswersFromTheSystemResolver) {
  ServerOptions o;
  o.bootstrap_dns_names = {"localhost"};
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  for (const char* target : {"/bootstrap-dns", "/bootstrap-dns?q=localhost"}) {
    const std::string res = http_get(
        relay->port(), std::string("GET ") + target + " HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(res.rfind("HTTP/1.1 200", 0), 0u) << res;
    EXPECT_NE(res.find("application/json"), std::string::npos);
    auto j = nlohmann::json::parse(body_of(res), nullptr, false);
    ASSERT_TRUE(j.is_object()) << res;
    ASSERT_TRUE(j.contains("localhost")) << res;
    bool loopback = false;
    for (const auto& ip : j["localhost"]) {
      loopback |= ip == "127.0.0.1" || ip == "::1";
    }
    EXPECT_TRUE(loopback) << res;
  }
  const std::string other = http_get(
      relay->port(), "GET /bootstrap-dns?q=nothing.invalid HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(body_of(other), "{}");
}

}  // namespace
}  // namespace derp::test
