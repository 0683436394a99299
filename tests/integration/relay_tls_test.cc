// The relay serving TLS (PROTOCOL.md §6.3, derper --certmode=manual): the self-signed
// certificate generated for an IP hostname and its sha256-raw pin, certificates from files
// signed by a CA made in the test, reloads that keep old connections, derper's --http-port
// handler beside TLS, and derp-serve's flags and stdout line.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "derp/client.h"
#include "derp/server.h"
#include "support/process.h"
#include "support/relay_harness.h"
#include "support/test_ca.h"
#include "support/tls_proxy.h"

namespace derp {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::LogWatch;
using test::RawConn;

const std::string kServe = std::string(DERP_BIN_DIR) + "/derp-serve";

void write_file(const std::string& path, const std::string& text) {
  // Write a sibling and rename it over, as cert renewal tools do: readers never see half a file.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    ASSERT_TRUE(f.good()) << tmp;
  }
  ASSERT_EQ(::rename(tmp.c_str(), path.c_str()), 0) << path;
}

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The next packet `c` receives (other messages skipped), or "" after the deadline.
std::string recv_packet(Client& c, NodePublic* src = nullptr) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto m = c.recv(5s);
    if (!m.ok()) {
      ADD_FAILURE() << m.error().message;
      return "";
    }
    if (auto* p = std::get_if<ReceivedPacket>(&*m)) {
      if (src) *src = p->src;
      return std::string(p->data.begin(), p->data.end());
    }
  }
  return "";
}

class RelayTls : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-tls-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    relay_.reset();
    fs::remove_all(dir_);
  }

  ServerOptions tls_options(const std::string& hostname) {
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    o.listen_addr = "127.0.0.1:0";
    o.threads = 1;
    o.cert_mode = "manual";
    o.cert_dir = dir_;
    o.hostname = hostname;
    o.log = log_.sink();
    return o;
  }

  void start(ServerOptions o) {
    auto s = Server::start(std::move(o));
    ASSERT_TRUE(s.ok()) << s.error().message;
    relay_ = std::move(*s);
  }

  std::string url() const {
    return "https://127.0.0.1:" + std::to_string(relay_->port()) + "/derp";
  }

  ClientOptions client_options() const {
    ClientOptions o;
    o.private_key = NodePrivate::generate();
    o.server_url = url();
    o.connect_timeout = 5s;
    return o;
  }

  static std::unique_ptr<Client> connected(ClientOptions o) {
    auto c = Client::create(std::move(o));
    EXPECT_TRUE(c.ok()) << c.error().message;
    if (!c.ok()) return nullptr;
    auto r = (*c)->connect();
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? std::move(*c) : nullptr;
  }

  // A sends to B and B to A over the relay.
  static void exchange(Client& a, Client& b, const std::string& tag) {
    ASSERT_TRUE(a.send(b.self_public_key(), bytes_of("a->b " + tag)).ok());
    NodePublic src;
    EXPECT_EQ(recv_packet(b, &src), "a->b " + tag);
    EXPECT_EQ(src, a.self_public_key());
    ASSERT_TRUE(b.send(a.self_public_key(), bytes_of("b->a " + tag)).ok());
    EXPECT_EQ(recv_packet(a, &src), "b->a " + tag);
    EXPECT_EQ(src, b.self_public_key());
  }

  // Writes a CA-signed certificate for 127.0.0.1/localhost as DIR/<name>.crt/.key.
  test::TestCert install_ca_cert(const std::string& name) {
    auto leaf = test::make_cert_signed_by(ca_, {});
    write_file(dir_ + "/" + name + ".key", leaf.key_pem);
    write_file(dir_ + "/" + name + ".crt", leaf.cert_pem);
    return leaf;
  }

  std::string dir_;
  LogWatch log_;
  std::unique_ptr<Server> relay_;
  test::TestCa ca_ = test::make_test_ca();
};

TEST_F(RelayTls, IpHostnameGetsAGeneratedSelfSignedCertificateWhosePinConnects) {
  start(tls_options("127.0.0.1"));
  ASSERT_TRUE(relay_->tls());
  const std::string pin = relay_->cert_pin();
  EXPECT_TRUE(std::regex_match(pin, std::regex("sha256-raw:[0-9a-f]{64}"))) << pin;
  // Saved where derper saves it, the key private to the owner.
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/127.0.0.1.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(fs::exists(dir_ + "/127.0.0.1.crt"));
  EXPECT_TRUE(log_.wait_for(pin));  // logged for the operator's DERP map

  auto oa = client_options();
  oa.cert_name = pin;
  auto ob = client_options();
  ob.cert_name = pin;
  auto a = connected(oa);
  auto b = connected(ob);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->tls_info().has_value());
  EXPECT_EQ(a->tls_info()->cert_sha256, pin);
  // derper's meta certificate rides after the leaf: a TLS 1.3 client takes the key from it.
  EXPECT_EQ(a->tls_info()->version, "TLSv1.3");
  EXPECT_TRUE(a->tls_info()->meta_cert);
  EXPECT_EQ(a->server_public_key(), relay_->public_key());
  exchange(*a, *b, "pinned");
  auto rtt = a->ping(5s);
  EXPECT_TRUE(rtt.ok()) << rtt.error().message;
}

TEST_F(RelayTls, GeneratedCertificateIsReusedAfterARestart) {
  start(tls_options("127.0.0.1"));
  const std::string pin = relay_->cert_pin();
  relay_.reset();
  start(tls_options("127.0.0.1"));
  EXPECT_EQ(relay_->cert_pin(), pin);
}

TEST_F(RelayTls, WrongPinIsRefused) {
  start(tls_options("127.0.0.1"));
  auto o = client_options();
  o.cert_name = "sha256-raw:" + test::make_test_cert().sha256_hex;
  auto c = Client::create(o);
  ASSERT_TRUE(c.ok());
  auto r = (*c)->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kTls) << r.error().message;
  EXPECT_NE(r.error().message.find("certificate sha256 mismatch"), std::string::npos)
      << r.error().message;
}

TEST_F(RelayTls, ManualCertificateSignedByACaFromFiles) {
  const auto leaf = install_ca_cert("localhost");
  start(tls_options("localhost"));
  EXPECT_EQ(relay_->cert_pin(), "sha256-raw:" + leaf.sha256_hex);
  const std::string ca_file = test::write_temp_file("ca.pem", ca_.cert_pem);
  auto oa = client_options();
  oa.ca_file = ca_file;
  auto ob = client_options();
  ob.ca_file = ca_file;
  auto a = connected(oa);
  auto b = connected(ob);
  ASSERT_TRUE(a && b);
  EXPECT_TRUE(a->tls_info()->verified);
  EXPECT_EQ(a->tls_info()->issuer, "CN=libderp test CA");
  exchange(*a, *b, "ca");
  // Many frames in both directions, including the largest packet: the TLS read path must
  // deliver bytes that OpenSSL holds between socket reads, and writes coalesce.
  std::string big(64 * 1024, 'x');
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(a->send(b->self_public_key(), bytes_of(std::to_string(i))).ok());
  }
  ASSERT_TRUE(a->send(b->self_public_key(), bytes_of(big)).ok());
  for (int i = 0; i < 50; ++i) ASSERT_EQ(recv_packet(*b), std::to_string(i));
  EXPECT_EQ(recv_packet(*b).size(), big.size());
}

TEST_F(RelayTls, CertificateNotValidForTheHostnameOrMissingIsRefusedAtStart) {
  test::TestCertSpec spec;
  spec.common_name = "other.invalid";
  spec.dns_names = {"other.invalid"};
  spec.ip_addrs = {};
  auto leaf = test::make_cert_signed_by(ca_, spec);
  write_file(dir_ + "/localhost.crt", leaf.cert_pem);
  write_file(dir_ + "/localhost.key", leaf.key_pem);
  auto s = Server::start(tls_options("localhost"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kTls);
  EXPECT_NE(s.error().message.find("cert invalid for hostname \"localhost\""), std::string::npos)
      << s.error().message;

  // A DNS hostname never gets a generated certificate.
  s = Server::start(tls_options("relay.invalid"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kTls);
  EXPECT_NE(s.error().message.find("relay.invalid.crt"), std::string::npos) << s.error().message;
  EXPECT_FALSE(fs::exists(dir_ + "/relay.invalid.crt"));
}

TEST_F(RelayTls, LetsEncryptAndUnknownCertModesAreUsageErrors) {
  auto o = tls_options("127.0.0.1");
  o.cert_mode = "letsencrypt";
  auto s = Server::start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kUsage);
  EXPECT_NE(s.error().message.find("letsencrypt\" is not supported"), std::string::npos);
  o.cert_mode = "auto";
  s = Server::start(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().kind, ErrorKind::kUsage);
}

TEST_F(RelayTls, ReloadServesTheNewCertificateAndKeepsOldConnections) {
  const auto first = install_ca_cert("localhost");
  auto o = tls_options("localhost");
  o.cert_check_interval = 0ms;  // only the explicit reload
  start(o);
  const std::string ca_file = test::write_temp_file("ca.pem", ca_.cert_pem);
  auto oa = client_options();
  oa.ca_file = ca_file;
  auto a = connected(oa);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->tls_info()->cert_sha256, "sha256-raw:" + first.sha256_hex);

  const auto second = install_ca_cert("localhost");
  auto ob = client_options();
  ob.ca_file = ca_file;
  auto b0 = connected(ob);  // files changed but no reload asked: still the first certificate
  ASSERT_TRUE(b0);
  EXPECT_EQ(b0->tls_info()->cert_sha256, "sha256-raw:" + first.sha256_hex);
  b0.reset();

  ASSERT_TRUE(relay_->reload_certificates().ok());
  EXPECT_EQ(relay_->cert_pin(), "sha256-raw:" + second.sha256_hex);
  ob.private_key = NodePrivate::generate();
  auto b = connected(ob);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->tls_info()->cert_sha256, "sha256-raw:" + second.sha256_hex);
  exchange(*a, *b, "across a reload");  // a still uses its first-certificate session

  // A broken pair is refused and the current certificate stays.
  write_file(dir_ + "/localhost.crt", first.cert_pem);  // key is the second's
  auto bad = relay_->reload_certificates();
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(relay_->cert_pin(), "sha256-raw:" + second.sha256_hex);
  EXPECT_TRUE(log_.wait_for("reload failed, keeping the old one"));
}

TEST_F(RelayTls, ChangedFilesAreReloadedAtAcceptTime) {
  install_ca_cert("localhost");
  auto o = tls_options("localhost");
  o.cert_check_interval = 20ms;
  start(o);
  const std::string ca_file = test::write_temp_file("ca.pem", ca_.cert_pem);
  auto oa = client_options();
  oa.ca_file = ca_file;
  auto a = connected(oa);
  ASSERT_TRUE(a);
  const auto next = install_ca_cert("localhost");
  // The check runs at accept time at most every 20 ms: new connections see the new certificate
  // once one accept after that interval has looked at the files.
  std::unique_ptr<Client> b;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto ob = client_options();
    ob.ca_file = ca_file;
    b = connected(ob);
    ASSERT_TRUE(b);
    if (b->tls_info()->cert_sha256 == "sha256-raw:" + next.sha256_hex) break;
    std::this_thread::yield();
  }
  ASSERT_EQ(b->tls_info()->cert_sha256, "sha256-raw:" + next.sha256_hex);
  exchange(*a, *b, "after file change");
}

TEST_F(RelayTls, HttpPortBesideTlsServesGenerate204AndRedirectsTheRest) {
  auto o = tls_options("127.0.0.1");
  o.http_port = 0;
  start(o);
  const std::string http = relay_->http_address();
  ASSERT_FALSE(http.empty());
  const auto port = static_cast<uint16_t>(std::stoi(http.substr(http.rfind(':') + 1)));
  {
    RawConn raw(port);
    ASSERT_TRUE(raw.write("GET /generate_204 HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto res = raw.read_http_response();
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->rfind("HTTP/1.1 204 No Content\r\n", 0), 0u) << *res;
  }
  {
    RawConn raw(port);
    ASSERT_TRUE(
        raw.write("GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n"));
    auto res = raw.read_http_response();
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->rfind("HTTP/1.1 302 Found\r\n", 0), 0u) << *res;
    // The TLS listener's port is kept (derper drops it: a relay on :8443 sent to :443).
    EXPECT_NE(res->find("Location: https://127.0.0.1:" + std::to_string(relay_->port()) +
                        "/derp\r\n"),
              std::string::npos)
        << *res;
  }
  {
    RawConn raw(port);
    ASSERT_TRUE(raw.write("POST /derp HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"));
    auto res = raw.read_http_response();
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << *res;
    EXPECT_NE(res->find("Use HTTPS"), std::string::npos) << *res;
  }
  {
    RawConn raw(port);
    ASSERT_TRUE(raw.write("GET /debug/vars HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto res = raw.read_http_response();
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << *res;
  }
  // The plain port is not a DERP listener, so it does not count as an accept.
  EXPECT_EQ(relay_->counters().at("accepts"), 0);
}

// Plain HTTP to the TLS port: the relay answers as Go's net/http does (a 400 saying the server
// is HTTPS) and closes, a TLS client keeps being served, and libderp's client (and so every tool)
// says to use https://.
TEST_F(RelayTls, PlainHttpToTheTlsPortGetsGo400AndTheClientSaysUseHttps) {
  start(tls_options("127.0.0.1"));
  {
    RawConn raw(relay_->port());
    ASSERT_TRUE(raw.ok());
    ASSERT_TRUE(raw.write("GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: DERP\r\n"
                          "Connection: Upgrade\r\n\r\n"));
    auto head = raw.read_http_head();
    ASSERT_TRUE(head.has_value());
    EXPECT_EQ(*head, "HTTP/1.0 400 Bad Request\r\n\r\n");
    auto body = raw.read_exact(std::string("Client sent an HTTP request to an HTTPS server.\n").size());
    ASSERT_TRUE(body.has_value());
    EXPECT_EQ(std::string(body->begin(), body->end()),
              "Client sent an HTTP request to an HTTPS server.\n");
    EXPECT_TRUE(raw.wait_closed());
  }
  ClientOptions plain = client_options();
  plain.server_url = "http://127.0.0.1:" + std::to_string(relay_->port()) + "/derp";
  auto c = Client::create(std::move(plain));
  ASSERT_TRUE(c.ok()) << c.error().message;
  auto r = (*c)->connect();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().hint.find("use https://"), std::string::npos)
      << r.error().message << " / " << r.error().hint;

  auto tool = test::run_tool("derp-ping", {"http://127.0.0.1:" + std::to_string(relay_->port()) +
                                               "/derp", "--count", "1", "--timeout", "5s"});
  EXPECT_NE(tool.exit_code, 0);
  EXPECT_NE(tool.err.find("use https://"), std::string::npos) << tool.err;

  auto oa = client_options();
  oa.cert_name = relay_->cert_pin();
  auto ob = client_options();
  ob.cert_name = relay_->cert_pin();
  auto a = connected(oa);
  auto b = connected(ob);
  ASSERT_TRUE(a && b);
  exchange(*a, *b, "after plain http");
}

TEST_F(RelayTls, PlainListenerSpeaksNoTlsAndHasNoPin) {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.threads = 1;
  o.http_port = 0;  // ignored without TLS, as derper
  start(o);
  EXPECT_FALSE(relay_->tls());
  EXPECT_EQ(relay_->cert_pin(), "");
  EXPECT_EQ(relay_->http_address(), "");
  EXPECT_FALSE(relay_->reload_certificates().ok());
}

// ---- derp-serve as a user runs it.

class DerpServeTls : public RelayTls {};

TEST_F(DerpServeTls, CertmodeManualPrintsHttpsHttpAndPinAndReloadsOnSighup) {
  auto child = test::Child::spawn(
      {kServe, "-a", "127.0.0.1:0", "--certmode", "manual", "--certdir", dir_, "--hostname",
       "127.0.0.1", "--http-port", "0", "--stun-port", "0", "--threads", "1"},
      dir_);
  ASSERT_TRUE(child);
  auto line = child->read_stdout_line();
  ASSERT_TRUE(line.has_value()) << child->stderr_text();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(
      *line, m,
      std::regex("derp-serve: listening on https://127\\.0\\.0\\.1:([0-9]+)/derp key "
                 "nodekey:[0-9a-f]{64} http 127\\.0\\.0\\.1:([0-9]+) pin "
                 "(sha256-raw:[0-9a-f]{64}) stun 127\\.0\\.0\\.1:[0-9]+")))
      << *line;
  const std::string port = m[1].str();
  const std::string pin = m[3].str();
  ClientOptions o;
  o.private_key = NodePrivate::generate();
  o.server_url = "https://127.0.0.1:" + port + "/derp";
  o.cert_name = pin;
  o.connect_timeout = 5s;
  auto a = connected(o);
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->ping(5s).ok());
  {
    RawConn raw(static_cast<uint16_t>(std::stoi(m[2].str())));
    ASSERT_TRUE(raw.write("GET /generate_204 HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto res = raw.read_http_response();
    ASSERT_TRUE(res.has_value());
    EXPECT_EQ(res->rfind("HTTP/1.1 204", 0), 0u) << *res;
  }

  // Replace the generated certificate with a CA-signed one for 127.0.0.1 and send SIGHUP.
  const auto leaf = install_ca_cert("127.0.0.1");
  child->signal(SIGHUP);
  ClientOptions ob = o;
  ob.private_key = NodePrivate::generate();
  ob.cert_name = "sha256-raw:" + leaf.sha256_hex;
  std::unique_ptr<Client> b;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!b && std::chrono::steady_clock::now() < deadline) {
    auto c = Client::create(ob);
    ASSERT_TRUE(c.ok());
    if ((*c)->connect().ok()) b = std::move(*c);  // refused while the old pin is served
  }
  ASSERT_TRUE(b) << child->stderr_text();
  exchange(*a, *b, "derp-serve reload");
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait(), 0) << child->stderr_text();
  EXPECT_NE(child->stderr_text().find("reloaded; pin sha256-raw:" + leaf.sha256_hex),
            std::string::npos)
      << child->stderr_text();
}

TEST_F(DerpServeTls, LetsencryptAndIncompleteTlsFlagsExitTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--certmode", "letsencrypt"}, "--certmode letsencrypt is not supported"},
      {{"--certmode", "manual", "--hostname", "127.0.0.1"}, "--certmode manual needs --certdir"},
      {{"--certmode", "manual", "--certdir", dir_}, "--certmode manual needs --hostname"},
      {{"-a", "127.0.0.1:443"}, "port 443 means TLS with Let's Encrypt"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {kServe, "--stun=false"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto child = test::Child::spawn(argv, dir_);
    ASSERT_TRUE(child);
    EXPECT_EQ(child->wait(), 2) << c.message;
    EXPECT_NE(child->stderr_text().find(c.message), std::string::npos) << child->stderr_text();
  }
}

}  // namespace
}  // namespace derp
