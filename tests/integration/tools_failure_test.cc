// One failure taxonomy for every tool (docs/CLI.md "Exit codes"): each layer is produced for real
// on loopback — an unresolvable .invalid name, a closed port, bad certificates made here, HTTP
// servers answering 404 or 200 without upgrading, a wrong server-key pin, a listener that never
// answers, a bad flag — and every client tool (derp-ping, derp-send, derp-connect, derp-recv) is
// checked for the exit code, the one-line stderr and the --json error object. Also: derp-ping --peer through derp-serve to
// derp-recv --echo, and --assert gates.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "support/process.h"
#include "support/tls_proxy.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace http = boost::beast::http;
using asio::ip::tcp;

std::string fail_temp_path(const std::string& name) {
  return ::testing::TempDir() + "derp_fail_" + std::to_string(::getpid()) + "_" + name;
}

nlohmann::json parse_one(const std::string& out) {
  auto j = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not one JSON object: " << out;
  return j.is_discarded() ? nlohmann::json::object() : j;
}

// A loopback HTTP/1.1 server that answers every request with one canned response (Beast does the
// HTTP), like a reverse proxy that does not pass Upgrade on, or a web server without /derp.
class CannedHttpServer {
 public:
  CannedHttpServer(unsigned status, std::string body)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        status_(status),
        body_(std::move(body)) {
    accept();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~CannedHttpServer() {
    io_.stop();
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

 private:
  void accept() {
    acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (ec) return;
      serve(std::move(s));
      accept();
    });
  }
  // One request per connection, synchronously on the server thread (tests send one at a time).
  void serve(tcp::socket s) {
    boost::beast::flat_buffer buf;
    http::request<http::string_body> req;
    boost::system::error_code ec;
    http::read(s, buf, req, ec);
    if (ec) return;
    http::response<http::string_body> res{static_cast<http::status>(status_), 11};
    res.set(http::field::content_type, "text/plain");
    res.body() = body_;
    res.prepare_payload();
    res.keep_alive(false);
    http::write(s, res, ec);
    s.shutdown(tcp::socket::shutdown_both, ec);
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  unsigned status_;
  std::string body_;
  std::thread thread_;
};

// A port nothing listens on: bound, then released.
uint16_t closed_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  uint16_t port = a.local_endpoint().port();
  a.close();
  return port;
}

class ToolFailures : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    url_.clear();
    key_file_ = fail_temp_path("serve.key");
    serve_ = new Process(tool_path("derp-serve"),
                         {"-a", "127.0.0.1:0", "--stun=false", "-c", key_file_});
    auto line = serve_->wait_for_line("derp-serve: listening on", 20s, Process::Stream::kStdout);
    ASSERT_TRUE(line) << "derp-serve did not start: " << serve_->err();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(
        *line, m, std::regex("(http://127\\.0\\.0\\.1:([0-9]+)/derp) key (nodekey:[0-9a-f]{64})")))
        << *line;
    url_ = m[1];
    port_ = static_cast<uint16_t>(std::stoi(m[2]));
    key_ = m[3];
  }
  static void TearDownTestSuite() {
    delete serve_;
    serve_ = nullptr;
    ::unlink(key_file_.c_str());
  }
  void SetUp() override {
    if (url_.empty()) GTEST_SKIP() << "no relay";
  }

  // Runs every client tool (derp-ping, derp-send, derp-connect, derp-recv) against `server`
  // (plus `extra` flags) with --json and checks each fails in `layer` with `exit_code`; returns
  // the error objects (in that order).
  static std::vector<nlohmann::json> expect_failure(const std::string& server,
                                                    const std::vector<std::string>& extra,
                                                    const std::string& layer, int exit_code) {
    std::vector<nlohmann::json> errors;
    const std::map<std::string, std::vector<std::string>> own_args = {
        {"derp-ping", {"--count", "1"}},
        {"derp-send", {"--to", key_, "--data", "x"}},
        {"derp-connect", {}},
        {"derp-recv", {"--count", "1"}},
    };
    for (const auto* tool : {"derp-ping", "derp-send", "derp-connect", "derp-recv"}) {
      std::vector<std::string> args = {server, "--json"};
      if (std::find(extra.begin(), extra.end(), "--timeout") == extra.end()) {
        args.insert(args.end(), {"--timeout", "3s"});
      }
      const auto& own = own_args.at(tool);
      args.insert(args.end(), own.begin(), own.end());
      args.insert(args.end(), extra.begin(), extra.end());
      auto r = run_tool(tool, args, "", 20s);
      EXPECT_EQ(r.exit_code, exit_code) << tool << " " << server << ": " << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << tool << ": " << r.err;
      EXPECT_EQ(r.err.rfind(std::string(tool) + ": ", 0), 0u) << r.err;
      auto j = parse_one(r.out);
      EXPECT_EQ(j["schema"], 1) << r.out;
      EXPECT_EQ(j["ok"], false) << r.out;
      EXPECT_EQ(j["error"]["layer"], layer) << tool << ": " << r.out;
      EXPECT_TRUE(j["error"]["message"].is_string()) << r.out;
      // stderr carries the same message (and the hint, if any).
      if (j["error"]["message"].is_string()) {
        EXPECT_NE(r.err.find(j["error"]["message"].get<std::string>()), std::string::npos) << r.err;
      }
      if (j["error"].contains("hint")) {
        EXPECT_NE(r.err.find("(hint: " + j["error"]["hint"].get<std::string>() + ")"),
                  std::string::npos)
            << r.err;
      }
      errors.push_back(j["error"]);
    }
    return errors;
  }

  static Process* serve_;
  static std::string url_;
  static uint16_t port_;
  static std::string key_;
  static std::string key_file_;
};
Process* ToolFailures::serve_ = nullptr;
std::string ToolFailures::url_;
uint16_t ToolFailures::port_ = 0;
std::string ToolFailures::key_;
std::string ToolFailures::key_file_;

TEST_F(ToolFailures, BadFlagIsUsageExit2) {
  for (const auto* tool : {"derp-ping", "derp-send", "derp-recv", "derp-keygen"}) {
    auto r = run_tool(tool, {"--json", "--no-such-flag"});
    EXPECT_EQ(r.exit_code, 2) << tool;
    auto j = parse_one(r.out);
    EXPECT_EQ(j["schema"], 1);
    EXPECT_EQ(j["ok"], false);
    EXPECT_EQ(j["error"]["layer"], "usage") << tool;
  }
  expect_failure(url_, {"--interval", "soon"}, "usage", 2);  // send: no --interval either
}

TEST_F(ToolFailures, UnresolvableNameIsDnsExit3) {
  auto e = expect_failure("http://relay.x.invalid/derp", {}, "dns", 3);
  for (const auto& err : e) {
    EXPECT_EQ(err["message"].get<std::string>().rfind("resolve relay.x.invalid: ", 0), 0u) << err;
  }
}

TEST_F(ToolFailures, ClosedPortIsConnectExit4) {
  const std::string where = "127.0.0.1:" + std::to_string(closed_port());
  auto e = expect_failure("http://" + where + "/derp", {}, "connect", 4);
  for (const auto& err : e) {
    EXPECT_EQ(err["message"], "connect to " + where + ": connection refused");
    EXPECT_FALSE(err.contains("hint"));
  }
}

class ToolTlsFailures : public ToolFailures {
 protected:
  // A TLS terminator in front of derp-serve with a certificate for 127.0.0.1 only.
  void front(bool expired) {
    cert_ = make_test_cert(
        {.common_name = "relay", .dns_names = {}, .ip_addrs = {"127.0.0.1"}, .expired = expired});
    ca_file_ = write_temp_file("fail_ca.pem", cert_.cert_pem);
    proxy_ = TlsProxy::start(cert_, port_);
    ASSERT_TRUE(proxy_);
    https_ = "https://127.0.0.1:" + std::to_string(proxy_->port()) + "/derp";
  }
  TestCert cert_;
  std::string ca_file_;
  std::unique_ptr<TlsProxy> proxy_;
  std::string https_;
};

TEST_F(ToolTlsFailures, SelfSignedCertificateIsTlsExit5WithReasonAndHint) {
  front(false);
  // Sanity: the same relay works once the certificate is trusted.
  auto good = run_tool("derp-ping", {https_, "--ca-file", ca_file_, "--count", "1"});
  ASSERT_EQ(good.exit_code, 0) << good.err;
  for (const auto& err : expect_failure(https_, {}, "tls", 5)) {
    EXPECT_EQ(err["tls_reason"], "self-signed certificate") << err;
    EXPECT_NE(err["hint"].get<std::string>().find("--ca-file"), std::string::npos) << err;
  }
}

TEST_F(ToolTlsFailures, ExpiredCertificateIsTlsExit5) {
  front(true);
  for (const auto& err : expect_failure(https_, {"--ca-file", ca_file_}, "tls", 5)) {
    EXPECT_EQ(err["tls_reason"], "certificate has expired") << err;
    EXPECT_NE(err["message"].get<std::string>().find("certificate verify failed: certificate "
                                                     "has expired"),
              std::string::npos)
        << err;
    EXPECT_NE(err["hint"].get<std::string>().find("expired"), std::string::npos) << err;
  }
}

TEST_F(ToolTlsFailures, CertificateForAnotherNameIsTlsExit5) {
  front(false);
  for (const auto& err : expect_failure(
           https_, {"--ca-file", ca_file_, "--cert-name", "relay.x.invalid"}, "tls", 5)) {
    EXPECT_EQ(err["tls_reason"], "hostname mismatch") << err;
    EXPECT_NE(err["hint"].get<std::string>().find("--cert-name"), std::string::npos) << err;
  }
}

TEST_F(ToolTlsFailures, WrongSha256PinIsTlsExit5) {
  front(false);
  const std::string wrong = "sha256-raw:" + std::string(64, '0');
  std::smatch m;
  for (const auto& err : expect_failure(https_, {"--cert-name", wrong}, "tls", 5)) {
    const std::string reason = err["tls_reason"];
    ASSERT_TRUE(std::regex_match(reason, m,
                                 std::regex("certificate sha256 mismatch \\(expected " +
                                            std::string(64, '0') + ", got ([0-9a-f]{64})\\)")))
        << err;
    // The hint is about the pin (and gives the relay's), not about --cert-name's name.
    EXPECT_EQ(err["hint"], "the certificate does not match the sha256-raw: pin; the relay's pin "
                           "is sha256-raw:" + m[1].str())
        << err;
  }
}

TEST_F(ToolTlsFailures, PlainRelaySpokenToWithHttpsIsTlsExit5) {
  const std::string plain = "https://127.0.0.1:" + std::to_string(port_) + "/derp";
  for (const auto& err : expect_failure(plain, {}, "tls", 5)) {
    EXPECT_FALSE(err.contains("tls_reason")) << err;  // not a certificate problem
    EXPECT_NE(err["hint"].get<std::string>().find("http://"), std::string::npos) << err;
  }
}

TEST_F(ToolFailures, Http404IsHttpExit6WithStatusAndHint) {
  CannedHttpServer web(404, "404 page not found\n");
  const std::string where = "127.0.0.1:" + std::to_string(web.port());
  for (const auto& err : expect_failure("http://" + where + "/derp", {}, "http", 6)) {
    EXPECT_EQ(err["http_status"], 404) << err;
    EXPECT_EQ(err["message"], "HTTP 404 from " + where + ": 404 page not found");
    EXPECT_EQ(err["hint"], "no DERP at this path: check the URL (a relay serves /derp)");
  }
}

TEST_F(ToolFailures, Http200WithoutUpgradeIsHttpExit6WithProxyHint) {
  CannedHttpServer proxy(200, "<html>hello</html>\n");
  const std::string where = "127.0.0.1:" + std::to_string(proxy.port());
  for (const auto& err : expect_failure("http://" + where + "/derp", {}, "http", 6)) {
    EXPECT_EQ(err["http_status"], 200) << err;
    EXPECT_NE(err["hint"].get<std::string>().find("a proxy stripped Upgrade: DERP: try "
                                                  "--websocket"),
              std::string::npos)
        << err;
  }
}

TEST_F(ToolFailures, RelayAtAnotherPathIsHttp404) {
  const std::string where = "127.0.0.1:" + std::to_string(port_);
  for (const auto& err : expect_failure("http://" + where + "/nope", {}, "http", 6)) {
    EXPECT_EQ(err["http_status"], 404) << err;
    EXPECT_EQ(err["message"], "HTTP 404 from " + where + ": 404 page not found");
  }
}

TEST_F(ToolFailures, WrongServerKeyPinIsProtocolExit7) {
  auto kg = run_tool("derp-keygen", {"--json"});
  ASSERT_EQ(kg.exit_code, 0);
  const std::string other = parse_one(kg.out)["public_key"];
  for (const auto& err : expect_failure(url_, {"--server-key", other}, "protocol", 7)) {
    EXPECT_NE(err["message"].get<std::string>().find("server key mismatch (expected " + other),
              std::string::npos)
        << err;
    EXPECT_NE(err["hint"].get<std::string>().find("--server-key"), std::string::npos) << err;
  }
}

TEST_F(ToolFailures, SilentListenerIsTimeoutExit8) {
  // The kernel completes the TCP handshake from the backlog; nobody ever reads or answers.
  asio::io_context io;
  tcp::acceptor silent(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::string where = "127.0.0.1:" + std::to_string(silent.local_endpoint().port());
  for (const auto& err :
       expect_failure("http://" + where + "/derp", {"--timeout", "300ms"}, "timeout", 8)) {
    EXPECT_EQ(err["message"], "connect to " + where +
                                  ": timed out after 300ms (waiting for the HTTP upgrade "
                                  "response)");
  }
}

TEST_F(ToolFailures, ServeCannotListenIsConnectExit4) {
  const std::string key = fail_temp_path("serve2.key");
  auto r = run_tool("derp-serve",
                    {"-a", "127.0.0.1:" + std::to_string(port_), "--stun=false", "-c", key});
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("derp-serve: listen on 127.0.0.1:" + std::to_string(port_)),
            std::string::npos)
      << r.err;
  ::unlink(key.c_str());
}

// derp-ping --peer: round trips through the relay to derp-recv --echo.
class PingPeer : public ToolFailures {
 protected:
  void SetUp() override {
    ToolFailures::SetUp();
    if (IsSkipped()) return;
    echo_ = std::make_unique<Process>(tool_path("derp-recv"),
                                      std::vector<std::string>{url_, "--echo", "--json"});
    auto ready = echo_->wait_for_line("\"event\":\"ready\"", 20s, Process::Stream::kStdout);
    ASSERT_TRUE(ready) << echo_->err();
    peer_ = parse_one(*ready)["key"].get<std::string>();
  }
  void TearDown() override {
    if (echo_) echo_->signal(SIGTERM);
  }
  std::unique_ptr<Process> echo_;
  std::string peer_;
};

TEST_F(PingPeer, MeasuresEchoRoundTripsThroughTheRelay) {
  auto r = run_tool("derp-ping", {url_, "--peer", peer_, "--count", "5", "--interval", "1ms",
                                  "--size", "200", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  auto j = parse_one(r.out);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["peer"], peer_);
  EXPECT_EQ(j["size"], 200);
  EXPECT_EQ(j["sent"], 5);
  EXPECT_EQ(j["received"], 5);
  EXPECT_EQ(j["loss"], 0.0);
  EXPECT_EQ(j["samples_ms"].size(), 5u);
  for (const char* k : {"min", "avg", "max", "p50", "p90", "p99"}) {
    EXPECT_GT(j["rtt_ms"][k].get<double>(), 0.0) << k;
  }
  // The echo side really saw our 200-byte packets (the relay was in the path).
  echo_->signal(SIGTERM);
  auto er = echo_->wait(20s);
  EXPECT_EQ(er.exit_code, 0) << er.err;
  int packets = 0;
  int presence_checks = 0;  // derp-ping's one 62-byte disco-shaped "is the peer here?" packet
  std::istringstream in(er.out);
  std::string line;
  while (std::getline(in, line)) {
    auto e = nlohmann::json::parse(line);
    if (e["event"] != "packet") continue;
    if (e["len"] == 62) {
      ++presence_checks;
      continue;
    }
    ++packets;
    EXPECT_EQ(e["len"], 200);
  }
  EXPECT_EQ(packets, 5);
  EXPECT_EQ(presence_checks, 1);
  echo_.reset();

  auto human = run_tool("derp-ping", {url_, "--peer", peer_, "--count", "1"});
  EXPECT_EQ(human.exit_code, 1) << "the echo peer is gone: " << human.err;
}

TEST_F(PingPeer, TextOutputShowsEchoLines) {
  auto r = run_tool("derp-ping", {url_, "--peer", peer_, "--count", "2", "--interval", "1ms"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::regex echo("echo from " + peer_ + " seq=[12] time=[0-9.]+ ms");
  auto begin = std::sregex_iterator(r.out.begin(), r.out.end(), echo);
  EXPECT_EQ(std::distance(begin, std::sregex_iterator()), 2) << r.out;
  EXPECT_NE(r.out.find("2 sent, 2 received, 0.0% loss"), std::string::npos) << r.out;
}

TEST_F(ToolFailures, PingPeerNotConnectedIsCheckFailure) {
  auto kg = run_tool("derp-keygen", {"--json"});
  const std::string absent = parse_one(kg.out)["public_key"];
  auto r = run_tool("derp-ping", {url_, "--peer", absent, "--count", "2", "--interval", "1ms",
                                  "--timeout", "2s", "--json"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  auto j = parse_one(r.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["received"], 0);
  EXPECT_EQ(j["loss"], 100.0);
  EXPECT_EQ(j["error"]["layer"], "check");
  // The relay answered derp-ping's disco-shaped presence check with PeerGone(NotHere).
  const std::string msg = j["error"]["message"];
  EXPECT_EQ(msg.rfind("peer " + absent + " is not connected to this relay", 0), 0u) << msg;
  EXPECT_EQ(j["error"]["hint"], "run `derp-recv --echo` with that key on the same relay");

  auto human = run_tool("derp-ping", {url_, "--peer", absent, "--count", "1", "--timeout", "5s"});
  EXPECT_EQ(human.exit_code, 1) << human.err;
  EXPECT_NE(human.out.find("no echo seq=1: peer " + absent + " is not connected to this relay"),
            std::string::npos)
      << human.out;
  EXPECT_NE(human.err.find("(hint: run `derp-recv --echo`"), std::string::npos) << human.err;
}

TEST_F(ToolFailures, PingSizeWithoutPeerAndBadPeerAreUsage) {
  auto size = run_tool("derp-ping", {url_, "--size", "100"});
  EXPECT_EQ(size.exit_code, 2) << size.err;
  EXPECT_NE(size.err.find("--size needs --peer"), std::string::npos) << size.err;
  auto bad = run_tool("derp-ping", {url_, "--peer", "nodekey:zz"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_NE(bad.err.find("--peer: "), std::string::npos) << bad.err;
}

TEST_F(PingPeer, AssertPassesAndFails) {
  auto pass =
      run_tool("derp-ping", {url_, "--peer", peer_, "--count", "3", "--interval", "1ms", "--assert",
                             "loss==0,received>=3,p99<10s", "--assert", "jitter<10s", "--json"});
  ASSERT_EQ(pass.exit_code, 0) << pass.err;
  auto pj = parse_one(pass.out);
  EXPECT_EQ(pj["ok"], true);
  ASSERT_EQ(pj["asserts"].size(), 4u) << pass.out;
  for (const auto& a : pj["asserts"]) EXPECT_EQ(a["ok"], true) << a;

  auto fail = run_tool("derp-ping", {url_, "--peer", peer_, "--count", "2", "--interval", "1ms",
                                     "--assert", "loss==0,p99<1us"});
  EXPECT_EQ(fail.exit_code, 1) << fail.err;
  EXPECT_TRUE(std::regex_search(
      fail.err, std::regex("derp-ping: assert failed: p99=[0-9.]+ms, want <1us\n")))
      << fail.err;
  EXPECT_EQ(fail.err.find("loss"), std::string::npos) << "loss==0 held: " << fail.err;
}

TEST_F(ToolFailures, AssertOnRelayPingJsonAndUnknownMetric) {
  auto fail = run_tool("derp-ping", {url_, "--count", "2", "--interval", "1ms", "--assert",
                                     "sent==3,loss<=0%", "--json"});
  EXPECT_EQ(fail.exit_code, 1) << fail.err;
  auto j = parse_one(fail.out);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["layer"], "check");
  EXPECT_EQ(j["error"]["message"], "assert failed: sent=2, want ==3");
  ASSERT_EQ(j["asserts"].size(), 2u);
  EXPECT_EQ(j["asserts"][0]["ok"], false);
  EXPECT_EQ(j["asserts"][0]["value"], 2.0);
  EXPECT_EQ(j["asserts"][1]["ok"], true);

  // SERVER after --assert is SERVER, not a second expression.
  auto before = run_tool("derp-ping", {"--assert", "sent==1", "--count", "1", url_});
  EXPECT_EQ(before.exit_code, 0) << before.err;

  auto unknown = run_tool("derp-ping", {url_, "--assert", "p98<5ms", "--json"});
  EXPECT_EQ(unknown.exit_code, 2) << unknown.err;
  auto u = parse_one(unknown.out);
  EXPECT_EQ(u["error"]["layer"], "usage");
  EXPECT_NE(u["error"]["message"].get<std::string>().find(
                "unknown metric \"p98\" (known: sent, received, loss (%), min (ms), avg (ms), "
                "max (ms), p50 (ms), p90 (ms), p99 (ms), jitter (ms))"),
            std::string::npos)
      << unknown.out;
}

}  // namespace
}  // namespace derp::test
