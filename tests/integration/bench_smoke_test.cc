// derp-bench as a user runs it, briefly, against an in-process derp::Server on 127.0.0.1: the
// numbers must be sane and the --json must parse. Timing targets live in bench/run.sh and
// docs/BENCHMARKS.md, never here.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "derp/server.h"
#include "support/process.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

class BenchSmoke : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    o.listen_addr = "127.0.0.1:0";
    o.threads = 1;
    auto s = Server::start(std::move(o));
    ASSERT_TRUE(s) << s.error().message;
    server_ = std::move(*s);
    url_ = "http://127.0.0.1:" + std::to_string(server_->port()) + "/derp";
  }

  nlohmann::json run_json(std::vector<std::string> args, int want_exit = 0) {
    return run_tool_json("derp-bench", std::move(args), want_exit);
  }

  std::unique_ptr<Server> server_;
  std::string url_;
};

void expect_sane_load(const nlohmann::json& j, int pairs) {
  ASSERT_EQ(j["schema"], 1);
  ASSERT_EQ(j["ok"], true) << j.dump();
  EXPECT_EQ(j["pairs"], pairs);
  const double secs = j["seconds"];
  EXPECT_GT(secs, 0.5);
  const uint64_t total_sent = j["total_sent"], total_delivered = j["total_delivered"];
  const uint64_t lost = j["lost"];
  EXPECT_GT(total_delivered, 0u);
  EXPECT_LE(total_delivered, total_sent);
  EXPECT_EQ(lost, total_sent - total_delivered);
  const double drop = j["drop_pct"];
  EXPECT_GE(drop, 0);
  EXPECT_LE(drop, 100);
  const double sent_pps = j["sent_pps"], delivered_pps = j["delivered_pps"];
  EXPECT_GT(delivered_pps, 0);
  EXPECT_GT(sent_pps, 0);
  // Per window: what was delivered cannot exceed what was sent plus what was in flight.
  EXPECT_LE(delivered_pps * secs, sent_pps * secs + 64.0 * pairs + 1);
  const double mbps = j["delivered_mbps"];
  const double size = j["size"];
  EXPECT_NEAR(mbps, delivered_pps * size * 8 / 1e6, 1e-6 * mbps + 1e-9);
  const auto& lat = j["latency_ms"];
  EXPECT_GT(lat["count"].get<uint64_t>(), 0u);
  EXPECT_GT(lat["p50"].get<double>(), 0);
  EXPECT_LE(lat["p50"].get<double>(), lat["p90"].get<double>());
  EXPECT_LE(lat["p90"].get<double>(), lat["p99"].get<double>());
  EXPECT_LE(lat["p99"].get<double>(), lat["p999"].get<double>());
  EXPECT_LE(lat["p999"].get<double>(), lat["max"].get<double>());
  const double ratio = j["fairness"]["min_max_ratio"];
  EXPECT_GT(ratio, 0);
  EXPECT_LE(ratio, 1);
  EXPECT_EQ(j["foreign"], 0);
}

TEST_F(BenchSmoke, ClosedLoopReportsSaneNumbersAsJson) {
  auto j = run_json({url_, "--pairs", "2", "--size", "1200", "--window", "8", "--duration", "1s",
                     "--warmup", "100ms", "--ping-interval", "20ms"});
  expect_sane_load(j, 2);
  EXPECT_EQ(j["mode"], "load");
  EXPECT_EQ(j["loop"], "closed");
  EXPECT_EQ(j["window"], 8);
  EXPECT_EQ(j["server_key"], server_->public_key().to_string());
  EXPECT_GT(j["ping_ms"]["count"].get<uint64_t>(), 0u);
  // Every packet the relay took was counted by the relay too.
  EXPECT_GE(server_->counters().at("packets_received"), j["total_delivered"].get<int64_t>());
}

TEST_F(BenchSmoke, OpenLoopKeepsToTheRate) {
  auto j = run_json({url_, "--pairs", "2", "--size", "64", "--rate", "500", "--duration", "1s",
                     "--warmup", "0s"});
  expect_sane_load(j, 2);
  EXPECT_EQ(j["loop"], "open");
  // Never more than the schedule allows (+1 per pair for the packet due at t=0, + the drain).
  const uint64_t total_sent = j["total_sent"];
  EXPECT_LE(total_sent, static_cast<uint64_t>(2 * 500 * 1.5 + 2));
}

TEST_F(BenchSmoke, RawForwarderCeiling) {
  auto j = run_json(
      {"--raw", "--pairs", "1", "--size", "16000", "--duration", "1s", "--warmup", "100ms"});
  expect_sane_load(j, 1);
  EXPECT_EQ(j["mode"], "raw");
}

TEST_F(BenchSmoke, IdleReportsRelayRssPerConnection) {
  auto j = run_json(
      {url_, "--idle", "50", "--duration", "100ms", "--server-pid", std::to_string(::getpid())});
  EXPECT_EQ(j["ok"], true) << j.dump();
  EXPECT_EQ(j["connections"], 50);
  EXPECT_TRUE(j["server_bytes_per_conn"].is_number()) << j.dump();
  EXPECT_GE(server_->counters().at("accepts"), 50);
}

TEST_F(BenchSmoke, ConnectStormCountsHandshakes) {
  auto j = run_json({url_, "--connect-storm", "100", "--concurrency", "8"});
  EXPECT_EQ(j["ok"], true) << j.dump();
  EXPECT_EQ(j["connections"], 100);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_GT(j["conns_per_second"].get<double>(), 0);
  EXPECT_EQ(j["handshake_ms"]["count"], 100);
  EXPECT_GE(server_->counters().at("accepts"), 100);
}

TEST_F(BenchSmoke, AssertGatesALoadRun) {
  const std::vector<std::string> load = {url_,         "--pairs",  "1",        "--window", "4",
                                         "--duration", "500ms",    "--warmup", "0s"};
  auto pass = load;
  pass.insert(pass.end(), {"--assert", "delivered_pps>0,p50>0ms", "--assert", "drop<=100%"});
  auto j = run_json(pass, 0);
  EXPECT_EQ(j["ok"], true) << j.dump();
  ASSERT_EQ(j["asserts"].size(), 3u) << j.dump();
  for (const auto& a : j["asserts"]) EXPECT_EQ(a["ok"], true) << a.dump();

  auto fail = load;
  fail.insert(fail.end(), {"--assert", "delivered_pps>1G", "--json"});
  auto r = run_tool("derp-bench", fail, "", 60s);
  EXPECT_EQ(r.exit_code, 1) << r.err << r.out;
  EXPECT_NE(r.err.find("assert failed: delivered_pps="), std::string::npos) << r.err;
  auto f = nlohmann::json::parse(r.out);
  EXPECT_EQ(f["ok"], false);
  EXPECT_EQ(f["error"]["layer"], "check");
  EXPECT_EQ(f["asserts"][0]["ok"], false);
  EXPECT_GT(f["delivered_pps"].get<double>(), 0);  // the measurement is still reported
}

TEST_F(BenchSmoke, AssertOnIdleAndStormUsesTheirMetrics) {
  auto idle = run_json({url_, "--idle", "20", "--duration", "50ms", "--server-pid",
                        std::to_string(::getpid()), "--assert",
                        "connections==20,server_bytes_per_conn<1G"});
  EXPECT_EQ(idle["ok"], true) << idle.dump();
  EXPECT_EQ(idle["asserts"].size(), 2u);
  auto storm = run_json({url_, "--connect-storm", "20", "--assert", "failed==0,handshake_p99>0ms"});
  EXPECT_EQ(storm["ok"], true) << storm.dump();
  auto low = run_json({url_, "--connect-storm", "20", "--assert", "conns_per_second>1G"}, 1);
  EXPECT_EQ(low["ok"], false) << low.dump();
  // A metric the mode does not measure is a usage error before anything runs.
  auto r = run_tool("derp-bench", {url_, "--idle", "5", "--assert", "p99<5ms"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("p99"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("server_bytes_per_conn"), std::string::npos) << r.err;  // known names
}

// --write-mode per-frame writes each frame on its own, as Tailscale's Go client does; batched
// (the default) puts every frame that is due in one write. With --server-pid (here this test
// process, which hosts the relay) the run reports the relay's CPU per delivered packet.
TEST_F(BenchSmoke, PerFrameWritesAndRelayCpuPerPacket) {
  const std::string pid = std::to_string(::getpid());
  auto per = run_json({url_, "--pairs", "2", "--size", "64", "--window", "16", "--duration", "1s",
                       "--warmup", "100ms", "--write-mode", "per-frame", "--server-pid", pid});
  expect_sane_load(per, 2);
  EXPECT_EQ(per["write_mode"], "per-frame");
  EXPECT_DOUBLE_EQ(per["frames_per_write"].get<double>(), 1.0);
  ASSERT_TRUE(per["relay_cpu_seconds"].is_number()) << per.dump();
  EXPECT_GT(per["relay_cpu_seconds"].get<double>(), 0);
  EXPECT_GT(per["relay_cpu_us_per_packet"].get<double>(), 0);
  EXPECT_GT(per["bench_cpu_seconds"].get<double>(), 0);

  auto batched = run_json({url_, "--pairs", "2", "--size", "64", "--window", "16", "--duration",
                           "1s", "--warmup", "100ms"});
  expect_sane_load(batched, 2);
  EXPECT_EQ(batched["write_mode"], "batched");
  // The window's first 16 frames leave in one write, so the average is above one.
  EXPECT_GT(batched["frames_per_write"].get<double>(), 1.0);
  EXPECT_TRUE(batched["relay_cpu_seconds"].is_null());

  // The figures gate like any other metric.
  auto gate = run_tool("derp-bench", {url_, "--pairs", "1", "--size", "64", "--duration", "300ms",
                                      "--warmup", "0s", "--write-mode", "per-frame",
                                      "--server-pid", pid, "--assert", "relay_cpu_per_packet<1ns"});
  EXPECT_EQ(gate.exit_code, 1) << gate.err;
  EXPECT_NE(gate.err.find("relay_cpu_per_packet"), std::string::npos) << gate.err;
  EXPECT_NE(gate.out.find("relay cpu"), std::string::npos) << gate.out;
  EXPECT_NE(gate.out.find("per-frame writes (1.0 frames per write)"), std::string::npos)
      << gate.out;
}

TEST_F(BenchSmoke, RefusesWhatItCannotDo) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {url_, "--assert"},
           {url_, "--assert", "delivered_pps>fast"},
           {"--derp-map", "missing-map.json", "--region", "1"},
           {"--raw", url_},
           {url_, "--size", "8"},
           {url_, "--rate", "fast"},
           {url_, "--window", "4", "--rate", "10"},
           {url_, "--server-pid", "1", "--connect-storm", "5"},
           {"--raw", "--server-pid", "1"},
           {url_, "--server-pid", "2147483647"},  // no such process: refused before the run
           {url_, "--write-mode", "sometimes"},
       }) {
    auto r = run_tool("derp-bench", args);
    EXPECT_EQ(r.exit_code, 2) << args[1] << ": " << r.err;
    EXPECT_NE(r.err.find("derp-bench: "), std::string::npos) << r.err;
  }
  // --websocket, --proxy and --derp-map: tests/integration/bench_transport_test.cc.
}

TEST(BenchSmokeNoRelay, ConnectRefusedIsExit4) {
  auto r = run_tool("derp-bench", {"http://127.0.0.1:1/derp", "--duration", "1s", "--json"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["layer"], "connect");
}

}  // namespace
}  // namespace derp::test
