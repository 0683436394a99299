// The failure rule of docs/CLI.md ("The failure rule"), one test for every tool: each failure
// mode below is run for real on loopback, once with --json and once without, and must show
//   exit ≠ 0  ⇔  "ok": false  ⇔  an "error" object {layer, message[, hint]} whose layer is the
//   exit code's (check = 1, usage = 2, dns = 3, connect = 4, ...)  ⇔  one error line on stderr,
//   `<tool>: <message>[ (hint: <hint>)]`, the same words as the JSON, and nothing else on stderr
//   but the tool's documented notes (derp-recv's ready line, derp-serve's log).
// A passing run of each tool that reports (exit 0) must say "ok": true without an error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "support/http_stub.h"
#include "support/process.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;

std::string contract_path(const std::string& name) {
  return ::testing::TempDir() + "derp_contract_" + std::to_string(::getpid()) + "_" + name;
}

uint16_t unused_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();  // released when `a` goes
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// The exit code of each --json error.layer (docs/CLI.md's table).
int exit_code_of_layer(const std::string& layer) {
  static const std::map<std::string, int> codes = {
      {"check", 1}, {"usage", 2},   {"dns", 3}, {"connect", 4},   {"tls", 5},      {"http", 6},
      {"protocol", 7}, {"timeout", 8}, {"io", 9}, {"closed", 9}, {"internal", 10}};
  auto it = codes.find(layer);
  return it == codes.end() ? -1 : it->second;
}

struct Case {
  std::string tool;
  std::vector<std::string> args;
  int exit_code;              // what the mode must exit with
  bool json = true;           // the tool takes --json (derp-serve does not)
  std::string notes = "^$";   // stderr lines other than the error line that the tool may print
  std::string what;           // the message must name this (what failed)
};

std::string describe(const Case& c, bool json) {
  std::string s = c.tool;
  for (const auto& a : c.args) s += " " + a;
  return s + (json ? " --json" : "");
}

// The error line on stderr: the last line; every earlier line is one of the case's notes.
std::string error_line(const Case& c, const ProcessResult& r, bool json) {
  auto lines = lines_of(r.err);
  EXPECT_FALSE(lines.empty()) << describe(c, json) << ": nothing on stderr";
  if (lines.empty()) return "";
  const std::regex notes(c.notes);
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    EXPECT_TRUE(std::regex_search(lines[i], notes))
        << describe(c, json) << ": more than one error line on stderr:\n"
        << r.err;
  }
  EXPECT_EQ(lines.back().rfind(c.tool + ": ", 0), 0u) << describe(c, json) << ": " << r.err;
  return lines.back();
}

void check_failure(const Case& c) {
  // Text mode.
  auto text = run_tool(c.tool, c.args, "", 60s);
  EXPECT_EQ(text.exit_code, c.exit_code) << describe(c, false) << "\n" << text.err;
  const std::string text_line = error_line(c, text, false);
  EXPECT_NE(text_line.find(c.what), std::string::npos)
      << describe(c, false) << ": the error line does not name " << c.what << ": " << text_line;
  if (!c.json) return;

  // --json: the same failure as one object whose error matches the stderr line.
  std::vector<std::string> args = c.args;
  args.push_back("--json");
  auto js = run_tool(c.tool, args, "", 60s);
  EXPECT_EQ(js.exit_code, c.exit_code) << describe(c, true) << "\n" << js.err;
  auto out = lines_of(js.out);
  ASSERT_FALSE(out.empty()) << describe(c, true) << ": no JSON";
  // Streaming tools (derp-recv) print events first; the verdict is the last line.
  auto j = nlohmann::json::parse(out.back(), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << describe(c, true) << ": not JSON: " << out.back();
  EXPECT_EQ(j["schema"], 1) << out.back();
  EXPECT_EQ(j["ok"], false) << describe(c, true) << ": " << out.back();
  ASSERT_TRUE(j.contains("error") && j["error"].is_object())
      << describe(c, true) << ": no error object: " << out.back();
  const auto& e = j["error"];
  ASSERT_TRUE(e["layer"].is_string()) << e;
  ASSERT_TRUE(e["message"].is_string()) << e;
  EXPECT_FALSE(e["message"].get<std::string>().empty()) << e;
  EXPECT_EQ(exit_code_of_layer(e["layer"]), c.exit_code)
      << describe(c, true) << ": layer " << e["layer"] << " for exit " << c.exit_code;
  EXPECT_NE(e["message"].get<std::string>().find(c.what), std::string::npos)
      << describe(c, true) << ": the message does not name " << c.what << ": " << e;
  std::string want = c.tool + ": " + e["message"].get<std::string>();
  if (e.contains("hint")) want += " (hint: " + e["hint"].get<std::string>() + ")";
  EXPECT_EQ(error_line(c, js, true), want) << describe(c, true);
}

// A passing run: exit 0, "ok": true, no error object.
void check_success(const std::string& tool, std::vector<std::string> args) {
  args.push_back("--json");
  auto r = run_tool(tool, args, "", 60s);
  EXPECT_EQ(r.exit_code, 0) << tool << ": " << r.err;
  auto out = lines_of(r.out);
  ASSERT_FALSE(out.empty()) << tool;
  auto j = nlohmann::json::parse(out.back(), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out.back();
  EXPECT_EQ(j["ok"], true) << tool << ": " << out.back();
  EXPECT_FALSE(j.contains("error")) << tool << ": " << out.back();
}

class FailureRule : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    url_.clear();
    serve_ = new Process(tool_path("derp-serve"), {"-a", "127.0.0.1:0", "--stun=false"});
    auto line = serve_->wait_for_line("derp-serve: listening on", 20s, Process::Stream::kStdout);
    ASSERT_TRUE(line) << serve_->err();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        *line, m, std::regex("(http://127\\.0\\.0\\.1:([0-9]+)/derp) key (nodekey:[0-9a-f]{64})")));
    url_ = m[1];
    port_ = m[2];
    key_ = m[3];
  }
  static void TearDownTestSuite() {
    delete serve_;
    serve_ = nullptr;
  }
  void SetUp() override {
    if (url_.empty()) GTEST_SKIP() << "no relay";
    closed_ = "http://127.0.0.1:" + std::to_string(unused_port()) + "/derp";
  }
  // A DERP map whose one region's node refuses connections (every tool dials it over TLS).
  std::string refused_map() {
    const std::string path = contract_path("refused_map.json");
    std::ofstream(path) << R"({"Regions":{"900":{"RegionID":900,"RegionCode":"r","Nodes":[{)"
                        << R"("Name":"900a","RegionID":900,"HostName":"localhost",)"
                        << R"("IPv4":"127.0.0.1","IPv6":"none","STUNPort":-1,)"
                        << R"("InsecureForTests":true,"DERPPort":)" << unused_port() << "}]}}}";
    return path;
  }
  std::string absent_key() {
    auto kg = run_tool("derp-keygen", {"--json"});
    return nlohmann::json::parse(kg.out)["public_key"];
  }

  static Process* serve_;
  static std::string url_;
  static std::string port_;
  static std::string key_;
  std::string closed_;
};
Process* FailureRule::serve_ = nullptr;
std::string FailureRule::url_;
std::string FailureRule::port_;
std::string FailureRule::key_;

const std::string kMeshKey(64, 'a');

TEST_F(FailureRule, ClientToolsAgainstAClosedPort) {
  for (const Case& c : std::vector<Case>{
           {"derp-connect", {closed_}, 4, true, "^$", "connection refused"},
           {"derp-ping", {closed_, "--count", "1"}, 4, true, "^$", "connection refused"},
           {"derp-send", {closed_, "--to", key_, "--data", "x"}, 4, true, "^$",
            "connection refused"},
           {"derp-recv", {closed_, "--count", "1"}, 4, true, "^$", "connection refused"},
           {"derp-watch", {closed_, "--mesh-key", kMeshKey, "--once", "--timeout", "2s"}, 4, true,
            "^derp-watch: ", "connection refused"},
           {"derp-bench", {closed_, "--duration", "100ms", "--warmup", "0s"}, 4, true, "^$",
            "connection refused"},
           {"derp-captive", {"127.0.0.1:" + std::to_string(unused_port())}, 4, true, "^$",
            "Couldn't connect"},
       }) {
    check_failure(c);
  }
}

TEST_F(FailureRule, UsageErrorsOfEveryTool) {
  for (const char* tool : {"derp-connect", "derp-ping", "derp-send", "derp-recv", "derp-watch",
                           "derp-probe", "derp-captive", "derp-keygen", "derp-bench"}) {
    // (derp-send's --to is required: given, so the bad flag is what fails.)
    std::vector<std::string> args = {"--no-such-flag"};
    if (std::string(tool) == "derp-send") args = {"--to", key_, "--no-such-flag"};
    check_failure({tool, args, 2, true, "^$", "--no-such-flag"});
  }
  check_failure({"derp-serve", {"--no-such-flag"}, 2, false, "^$", "--no-such-flag"});
  const std::string key = contract_path("keygen.key");
  ASSERT_EQ(run_tool("derp-keygen", {"--out", key, "--force"}).exit_code, 0);
  check_failure({"derp-keygen", {"--out", key}, 2, true, "^$", key});
  ::unlink(key.c_str());
  check_failure({"derp-probe", {"lint", contract_path("no_such_map.json")}, 2, true, "^$",
                 "no_such_map.json"});
}

TEST_F(FailureRule, ServeCannotListenOrHasNoCertificate) {
  check_failure({"derp-serve", {"-a", "127.0.0.1:" + port_, "--stun=false"}, 4, false,
                 "^derp-serve: ", "127.0.0.1:" + port_});
  // A DNS --hostname needs its certificate files: exit 5 (docs/CLI.md's table).
  check_failure({"derp-serve",
                 {"-a", "127.0.0.1:0", "--stun=false", "--certmode", "manual", "--certdir",
                  ::testing::TempDir(), "--hostname", "relay.example.com"},
                 5,
                 false,
                 "^derp-serve: ",
                 "relay.example.com"});
}

TEST_F(FailureRule, TimeoutsAndChecksThatFail) {
  for (const Case& c : std::vector<Case>{
           {"derp-recv", {url_, "--count", "1", "--timeout", "300ms"}, 8, true,
            "^derp-recv: ready as ", "before the timeout"},
           {"derp-ping", {url_, "--peer", absent_key(), "--count", "1", "--timeout", "2s"}, 1,
            true, "^$", "is not connected to this relay"},
           {"derp-ping", {url_, "--count", "2", "--interval", "1ms", "--assert", "sent==3"}, 1,
            true, "^$", "sent=2"},
           {"derp-send", {url_, "--to", absent_key(), "--data", "x", "--expect-peer"}, 1, true,
            "^$", "is not connected to this relay"},
           {"derp-bench",
            {url_, "--duration", "100ms", "--warmup", "0s", "--assert", "sent_pps>1000G"},
            1, true, "^$", "sent_pps"},
           {"derp-bench", {url_, "--connect-storm", "2", "--assert", "connections>5"}, 1, true,
            "^$", "connections=2"},
       }) {
    check_failure(c);
  }
}

TEST_F(FailureRule, ProbeNetcheckProberAndLint) {
  const std::string map = refused_map();
  for (const Case& c : std::vector<Case>{
           {"derp-probe", {"--derp-map", map, "--timeout", "2s"}, 1, true, "^$",
            "no region answered (900 (r): "},
           {"derp-probe", {"--derp-map", map, "--prober", "--once", "--timeout", "2s"}, 1, true,
            "^$", "derp/900/900a: "},
           {"derp-probe", {"lint", map, "--active", "--timeout", "2s"}, 1, true, "^$",
            "unreachable-port"},
       }) {
    check_failure(c);
  }
}

TEST_F(FailureRule, CaptiveOnANonRelayPortAndMeshCheckThatFails) {
  HttpStub web([](const HttpStub::Seen&) { return HttpStub::Answer{200, "<html>login</html>"}; });
  check_failure({"derp-captive", {"127.0.0.1:" + std::to_string(web.port())}, 1, true, "^$",
                 "captive portal or middlebox detected: http://127.0.0.1:" +
                     std::to_string(web.port())});
  // One relay of two is down: every pair touching it fails, and the line says why.
  check_failure({"derp-watch",
                 {"--check-mesh", url_, closed_, "--timeout", "1s"},
                 1,
                 true,
                 "^$",
                 "failing pairs: 0->1, 1->0, 1->1; relay 1 unreachable: connect to "});
}

// derp-send: a relay that says the peer is not there (PeerGone, only for disco-shaped packets)
// gets a warning, exit 0; --expect-peer makes it a check (above) and passes for a present peer.
TEST_F(FailureRule, SendWarnsWhenTheRelaySaysThePeerIsGoneAndExpectPeerPasses) {
  const std::string absent = absent_key();
  const std::string disco = "TS\xf0\x9f\x92\xac" + std::string(60, 'x');
  auto warned = run_tool("derp-send", {url_, "--to", absent, "--data", disco});
  EXPECT_EQ(warned.exit_code, 0) << warned.err;
  EXPECT_EQ(warned.err, "derp-send: warning: peer " + absent +
                            " is not connected to this relay: the relay dropped the packet\n");

  Process recv(tool_path("derp-recv"), {url_, "--count", "2", "--json"});
  auto ready = recv.wait_for_line("\"event\":\"ready\"", 20s, Process::Stream::kStdout);
  ASSERT_TRUE(ready) << recv.err();
  const std::string peer = nlohmann::json::parse(*ready)["key"];
  auto ok = run_tool("derp-send", {url_, "--to", peer, "--data", "hello", "--expect-peer", "--json"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  auto j = nlohmann::json::parse(ok.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["peer_present"], true);
  EXPECT_EQ(ok.err, "");
  // The peer got the presence check, then the packet.
  auto done = recv.wait(20s);
  EXPECT_EQ(done.exit_code, 0) << done.err;
  EXPECT_NE(done.out.find("\"len\":62"), std::string::npos) << done.out;
  EXPECT_NE(done.out.find("\"text\":\"hello\""), std::string::npos) << done.out;
}

TEST_F(FailureRule, PassingRunsSayOk) {
  check_success("derp-connect", {url_});
  check_success("derp-ping", {url_, "--count", "1"});
  check_success("derp-send", {url_, "--to", key_, "--data", "x"});
  check_success("derp-keygen", {});
  check_success("derp-watch", {"--check-mesh", url_, "--timeout", "2s"});
  check_success("derp-captive", {"127.0.0.1:" + port_});
  check_success("derp-bench", {url_, "--duration", "100ms", "--warmup", "0s"});
}

}  // namespace
}  // namespace derp::test
