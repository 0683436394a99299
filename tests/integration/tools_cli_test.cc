// The tools as a user runs them: derp-keygen, derp-send, derp-recv, derp-ping against
// derp-serve (a process on 127.0.0.1, ephemeral port). Exit codes and --json are checked.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "support/process.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) v.push_back(nlohmann::json::parse(line));
  }
  return v;
}

std::string cli_temp_path(const std::string& name) {
  return ::testing::TempDir() + "derp_tools_" + std::to_string(::getpid()) + "_" + name;
}

// One derp-serve for the whole suite.
class Tools : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    url_.clear();
    key_.clear();
    serve_ = new Process(tool_path("derp-serve"), {"-a", "127.0.0.1:0", "--stun-port", "0"});
    // The stdout line is the documented one; stderr may log its own "listening" line.
    auto line = serve_->wait_for_line("derp-serve: listening on", 20s, Process::Stream::kStdout);
    ASSERT_TRUE(line) << "derp-serve did not start: " << serve_->err();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        *line, m, std::regex("(http://127\\.0\\.0\\.1:[0-9]+/derp) key (nodekey:[0-9a-f]{64})")))
        << *line;
    url_ = m[1];
    key_ = m[2];
  }
  static void TearDownTestSuite() {
    delete serve_;
    serve_ = nullptr;
  }
  void SetUp() override {
    if (url_.empty()) GTEST_SKIP() << "no relay";
  }

  static Process* serve_;
  static std::string url_;
  static std::string key_;
};
Process* Tools::serve_ = nullptr;
std::string Tools::url_;
std::string Tools::key_;

TEST(ToolsKeygen, PrintsPrivateAndPublicKey) {
  auto r = run_tool("derp-keygen", {});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::regex_match(r.out, std::regex("privkey:[0-9a-f]{64}\nnodekey:[0-9a-f]{64}\n")))
      << r.out;
}

TEST(ToolsKeygen, WritesKeyFileWithMode0600AndRefusesToOverwrite) {
  const std::string path = cli_temp_path("key.json");
  ::unlink(path.c_str());
  auto r = run_tool("derp-keygen", {"--out", path, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["schema"], 1);
  EXPECT_EQ(j["ok"], true);
  EXPECT_TRUE(
      std::regex_match(j["public_key"].get<std::string>(), std::regex("nodekey:[0-9a-f]{64}")));
  EXPECT_FALSE(j.contains("private_key"));
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(path);
  auto file = nlohmann::json::parse(in);
  EXPECT_EQ(file["PrivateKey"].get<std::string>().rfind("privkey:", 0), 0u);

  auto again = run_tool("derp-keygen", {"--out", path});
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_NE(again.err.find("refusing to overwrite"), std::string::npos) << again.err;
  auto forced = run_tool("derp-keygen", {"--out", path, "--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.err;
  ::unlink(path.c_str());
}

TEST(ToolsCli, VersionAndBadFlag) {
  for (const char* tool : {"derp-keygen", "derp-send", "derp-recv", "derp-ping"}) {
    auto v = run_tool(tool, {"--version"});
    EXPECT_EQ(v.exit_code, 0) << tool;
    EXPECT_EQ(v.out.rfind(std::string(tool) + " ", 0), 0u) << v.out;
    auto bad = run_tool(tool, {"--no-such-flag"});
    EXPECT_EQ(bad.exit_code, 2) << tool;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
    EXPECT_EQ(bad.err.rfind(std::string(tool) + ": ", 0), 0u) << bad.err;
  }
}

TEST_F(Tools, SendDeliversToRecvWithJson) {
  const std::string keyfile = cli_temp_path("recv.json");
  ::unlink(keyfile.c_str());
  auto kg = run_tool("derp-keygen", {"--out", keyfile, "--json"});
  ASSERT_EQ(kg.exit_code, 0) << kg.err;
  const std::string pub = nlohmann::json::parse(kg.out)["public_key"];

  Process recv(tool_path("derp-recv"),
               {url_, "--key-file", keyfile, "--count", "1", "--timeout", "20s", "--json"});
  ASSERT_TRUE(recv.wait_for_line("\"event\":\"ready\"", 20s)) << recv.err();
  auto send = run_tool("derp-send", {url_, "--to", pub, "--data", "hello tools", "--json"});
  ASSERT_EQ(send.exit_code, 0) << send.err;
  auto sj = nlohmann::json::parse(send.out);
  EXPECT_EQ(sj["ok"], true);
  EXPECT_EQ(sj["to"], pub);
  EXPECT_EQ(sj["ephemeral_key"], true);
  EXPECT_EQ(sj["len"], 11);

  auto r = recv.wait(20s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto lines = json_lines(r.out);
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines[0]["key"], pub);
  EXPECT_EQ(lines[1]["event"], "packet");
  EXPECT_EQ(lines[1]["src"], sj["from"]);
  EXPECT_EQ(lines[1]["text"], "hello tools");
  EXPECT_EQ(lines[1]["data_hex"], "68656c6c6f20746f6f6c73");
  EXPECT_EQ(lines[1]["len"], 11);
  ::unlink(keyfile.c_str());
}

TEST_F(Tools, SendReadsStdinAndRecvPrintsText) {
  Process recv(tool_path("derp-recv"), {url_, "--count", "1", "--timeout", "20s"});
  auto ready = recv.wait_for_line("ready as", 20s);
  ASSERT_TRUE(ready) << recv.err();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*ready, m, std::regex("nodekey:[0-9a-f]{64}")));
  const std::string pub = m[0];
  auto send = run_tool("derp-send", {url_, "--to", pub}, "from stdin");
  ASSERT_EQ(send.exit_code, 0) << send.err;
  auto r = recv.wait(20s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(" from stdin\n"), std::string::npos) << r.out;
}

TEST_F(Tools, RecvTimesOutWithExit8) {
  auto r = run_tool("derp-recv", {url_, "--count", "1", "--timeout", "200ms"});
  EXPECT_EQ(r.exit_code, 8) << r.err;
  EXPECT_NE(r.err.find("received 0 of 1 packets"), std::string::npos) << r.err;
}

TEST_F(Tools, PingPrintsRttLinesAndSummary) {
  auto r = run_tool("derp-ping", {url_, "--count", "3", "--interval", "10ms"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::regex pong("pong from http://127\\.0\\.0\\.1:[0-9]+/derp seq=[123] time=[0-9.]+ ms");
  auto begin = std::sregex_iterator(r.out.begin(), r.out.end(), pong);
  EXPECT_EQ(std::distance(begin, std::sregex_iterator()), 3) << r.out;
  EXPECT_NE(r.out.find("3 sent, 3 received, 0.0% loss"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("rtt min/avg/max/p50/p90/p99/jitter = "), std::string::npos) << r.out;
}

TEST_F(Tools, PingJsonHasDocumentedFields) {
  auto r = run_tool("derp-ping",
                    {url_, "--count", "2", "--interval", "1ms", "--json", "--server-key", key_});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["schema"], 1);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["sent"], 2);
  EXPECT_EQ(j["received"], 2);
  EXPECT_EQ(j["loss"], 0.0);
  EXPECT_EQ(j["server_key"], key_);
  for (const char* k : {"min", "avg", "max", "p50", "p99"}) {
    ASSERT_TRUE(j["rtt_ms"].contains(k)) << k;
    EXPECT_GT(j["rtt_ms"][k].get<double>(), 0.0) << k;
  }
}

TEST(ToolsErrors, UnreachableServerIsExit4WithConnectLayer) {
  auto r = run_tool("derp-ping", {"http://127.0.0.1:1/derp", "--json", "--count", "1"});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["layer"], "connect");
  EXPECT_EQ(j["error"]["message"], "connect to 127.0.0.1:1: connection refused");
  EXPECT_EQ(r.err, "derp-ping: connect to 127.0.0.1:1: connection refused\n");
}

TEST(ToolsErrors, BadKeyIsExit2) {
  auto r = run_tool("derp-send", {"http://127.0.0.1:1/derp", "--to", "nodekey:zz", "--data", "x"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--to: "), std::string::npos) << r.err;
  auto pin = run_tool("derp-ping", {"http://127.0.0.1:1/derp", "--server-key", "bogus"});
  EXPECT_EQ(pin.exit_code, 2) << pin.err;
  auto dur = run_tool("derp-ping", {"http://127.0.0.1:1/derp", "--interval", "5parsecs"});
  EXPECT_EQ(dur.exit_code, 2) << dur.err;
  EXPECT_NE(dur.err.find("unknown unit"), std::string::npos) << dur.err;
  auto url = run_tool("derp-ping", {"ftp://127.0.0.1/derp"});
  EXPECT_EQ(url.exit_code, 2) << url.err;
}

// derp-captive only speaks plain HTTP (a portal answers before any TLS) and --port only has a
// meaning for the nodes of a map: both are refused in one line instead of failing in libcurl or
// being ignored.
TEST(ToolsErrors, CaptiveRefusesWhatItCannotDo) {
  for (const char* url : {"https://127.0.0.1:1/", "ftp://127.0.0.1/"}) {
    auto r = run_tool("derp-captive", {url});
    EXPECT_EQ(r.exit_code, 2) << url << ": " << r.err;
    EXPECT_NE(r.err.find("use http://"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  auto port = run_tool("derp-captive", {"http://127.0.0.1:1/", "--port", "8080"});
  EXPECT_EQ(port.exit_code, 2) << port.err;
  EXPECT_EQ(port.err,
            "derp-captive: --port applies only with --derp-map; give a SERVER's port in it "
            "(host:port)\n");
}

// An IPv6 literal without brackets is named as such, not as a missing host.
TEST(ToolsErrors, UnbracketedIpv6SaysBrackets) {
  auto r = run_tool("derp-ping", {"http://::1:38181/derp"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("must be in brackets"), std::string::npos) << r.err;
}

TEST_F(Tools, WrongServerKeyIsExit7) {
  auto kg = run_tool("derp-keygen", {"--json"});
  ASSERT_EQ(kg.exit_code, 0);
  const std::string other = nlohmann::json::parse(kg.out)["public_key"];
  auto r = run_tool("derp-ping", {url_, "--server-key", other, "--count", "1", "--json"});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["error"]["layer"], "protocol");
}

TEST_F(Tools, SendRefusesOversizedPayload) {
  auto r = run_tool("derp-send", {url_, "--to", key_}, std::string(65537, 'x'));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("65536-byte"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace derp::test

namespace derp::test {
namespace {

// Every bad flag value is one line "<tool>: --flag must be ... (got X)" and exit 2, never
// CLI11's raw range text ("Value 0 not in range 0.000000 to 1797...").
TEST(ToolsValidation, BadNumbersAreOneLineNamingTheFlagAndValue) {
  struct Case {
    const char* tool;
    std::vector<std::string> args;
    std::string line;
  };
  const std::vector<Case> cases = {
      {"derp-ping", {"http://127.0.0.1:1", "--count", "0"}, "--count must be \u2265 1 (got 0)"},
      {"derp-recv", {"http://127.0.0.1:1", "--count", "-1"}, "--count must be \u2265 0 (got -1)"},
      {"derp-serve", {"--threads", "-1"}, "--threads must be \u2265 0 (got -1)"},
      {"derp-ping",
       {"--derp-map", "m.json", "--region", "abc"},
       "--region must be an integer (got abc)"},
      {"derp-ping",
       {"http://127.0.0.1:1", "--peer", "nodekey:00", "--size", "5"},
       "--size must be between 32 and 65536 (got 5)"},
      {"derp-serve",
       {"--accept-connection-limit", "x"},
       "--accept-connection-limit must be a number (got x)"},
      // A zero timeout or interval means nothing: refused, not a coin toss between 0 and 1.
      {"derp-ping", {"http://127.0.0.1:1", "--timeout", "0"}, "--timeout must be more than 0 (got 0)"},
      {"derp-recv", {"http://127.0.0.1:1", "--timeout", "0s"}, "--timeout must be more than 0 (got 0s)"},
      {"derp-watch",
       {"http://127.0.0.1:1", "--mesh-key", std::string(64, 'a'), "--timeout", "0"},
       "--timeout must be more than 0 (got 0)"},
  };
  for (const auto& c : cases) {
    auto r = run_tool(c.tool, c.args);
    EXPECT_EQ(r.exit_code, 2) << c.tool << ": " << r.err;
    // CLI11's own checks add "(see --help)"; the durations are checked after parsing.
    const std::string suffix = c.line.starts_with("--timeout") ? "" : " (see --help)";
    EXPECT_EQ(r.err, std::string(c.tool) + ": " + c.line + suffix + "\n");
  }
}

// A key file's path appears once in the message, for the node key and the mesh key.
TEST(ToolsValidation, KeyFilePathIsPrintedOnce) {
  const std::string path = cli_temp_path("no_such_dir") + "/m.key";
  auto count = [&](const std::string& s) {
    size_t n = 0;
    for (size_t at = s.find(path); at != std::string::npos; at = s.find(path, at + 1)) ++n;
    return n;
  };
  auto watch = run_tool("derp-watch", {"http://127.0.0.1:1", "--mesh-psk-file", path});
  EXPECT_EQ(watch.exit_code, 2);
  EXPECT_EQ(count(watch.err), 1u) << watch.err;
  auto ping = run_tool("derp-ping", {"http://127.0.0.1:1", "--key-file", path});
  EXPECT_EQ(ping.exit_code, 2);
  EXPECT_EQ(count(ping.err), 1u) << ping.err;
  auto serve = run_tool("derp-serve", {"-a", "127.0.0.1:0", "--mesh-psk-file", path});
  EXPECT_EQ(serve.exit_code, 2);
  EXPECT_EQ(count(serve.err), 1u) << serve.err;
}

}  // namespace
}  // namespace derp::test
