// Mesh links over TLS as derper makes them (issue 19): a bare --mesh-with host:port means
// https://host:port/derp, explicit http:// URLs stay plain, and peers whose certificates come
// from a private CA verify through --mesh-ca-file / ServerOptions::mesh_ca_file or OpenSSL's
// SSL_CERT_FILE. Both relays serve a leaf for 127.0.0.1 signed by a CA made in the test.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "derp/client.h"
#include "derp/server.h"
#include "support/process.h"
#include "support/relay_harness.h"
#include "support/test_ca.h"

namespace derp::test {
// Named, not anonymous: in a unity build this file shares a translation unit with others.
namespace mesh_tls {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kServeBin = std::string(DERP_BIN_DIR) + "/derp-serve";

void put_file(const std::string& path, const std::string& text, mode_t mode = 0600) {
  {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    ASSERT_TRUE(f.good()) << path;
  }
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;
}

class MeshTls : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-mesh-tls-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ca_ = make_test_ca("mesh private CA");
    const TestCert leaf = make_cert_signed_by(ca_, {});  // SANs 127.0.0.1 and localhost
    put_file(dir_ + "/127.0.0.1.crt", leaf.cert_pem);
    put_file(dir_ + "/127.0.0.1.key", leaf.key_pem);
    put_file(ca_file(), ca_.cert_pem, 0644);
    put_file(psk_file(), std::string(64, 'c') + "\n");
    ports_ = free_loopback_ports(2);
  }
  void TearDown() override {
    for (auto& r : relays_) r.reset();
    fs::remove_all(dir_);
  }

  std::string ca_file() const { return dir_ + "/ca.pem"; }
  std::string psk_file() const { return dir_ + "/mesh.key"; }
  std::string addr(int i) const { return "127.0.0.1:" + std::to_string(ports_[i]); }
  std::string https_url(int i) const { return "https://" + addr(i) + "/derp"; }

  // An in-process TLS relay i meshed with both listen addresses written bare (itself skipped).
  void start_tls(int i, const std::string& mesh_ca) {
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    o.listen_addr = addr(i);
    o.threads = 1;
    o.cert_mode = "manual";
    o.cert_dir = dir_;
    o.hostname = "127.0.0.1";
    o.mesh_key = *MeshKey::parse(std::string(64, 'c'));
    o.mesh_with = {addr(0), addr(1)};
    o.mesh_ca_file = mesh_ca;
    o.log = logs_[i].sink();
    auto s = Server::start(std::move(o));
    ASSERT_TRUE(s) << s.error().message;
    relays_[i] = std::move(*s);
  }

  std::unique_ptr<Client> client_of(int i) {
    ClientOptions o;
    o.private_key = NodePrivate::generate();
    o.server_url = https_url(i);
    o.ca_file = ca_file();
    o.connect_timeout = 5s;
    auto c = Client::create(std::move(o));
    EXPECT_TRUE(c) << c.error().message;
    if (!c) return nullptr;
    auto r = (*c)->connect();
    EXPECT_TRUE(r) << r.error().message;
    return r ? std::move(*c) : nullptr;
  }

  // derp-serve relay i over TLS, meshed with `mesh_with`, run through /usr/bin/env so a test
  // controls SSL_CERT_FILE (never inherited from the machine running the tests).
  std::unique_ptr<Process> serve_tls(int i, const std::string& mesh_with,
                                     std::vector<std::string> extra,
                                     const std::string& ssl_cert_file = "") {
    std::vector<std::string> args = {"-u", "SSL_CERT_FILE", "-u", "SSL_CERT_DIR"};
    if (!ssl_cert_file.empty()) args.push_back("SSL_CERT_FILE=" + ssl_cert_file);
    const std::vector<std::string> serve = {
        kServeBin,         "-a",       addr(i),       "--stun=false",
        "--threads",       "1",        "--http-port", "-1",
        "--certmode",      "manual",   "--hostname",  "127.0.0.1",
        "--certdir",       dir_,       "-c",          dir_ + "/relay" + std::to_string(i) + ".key",
        "--mesh-psk-file", psk_file(), "--mesh-with", mesh_with};
    args.insert(args.end(), serve.begin(), serve.end());
    args.insert(args.end(), extra.begin(), extra.end());
    auto p = std::make_unique<Process>("/usr/bin/env", args);
    EXPECT_TRUE(p->wait_for_line("listening on https://", kWait, Process::Stream::kStdout))
        << p->err();
    return p;
  }

  std::string dir_;
  TestCa ca_;
  std::vector<uint16_t> ports_;
  LogWatch logs_[2];
  std::unique_ptr<Server> relays_[2];
};

// derper's startMeshWithHost dials "https://" + host + "/derp": a TLS pair listed bare forms
// the mesh, and a packet from a client of one relay reaches a client of the other.
TEST_F(MeshTls, BareHostPortEntriesDialHttpsAndAPacketCrossesTheMesh) {
  start_tls(0, ca_file());
  start_tls(1, ca_file());
  EXPECT_TRUE(logs_[0].wait_for("skipping " + addr(0) + " (this relay)")) << logs_[0].all();
  ASSERT_TRUE(logs_[0].wait_for("mesh link to " + https_url(1) + " up")) << logs_[0].all();
  ASSERT_TRUE(logs_[1].wait_for("mesh link to " + https_url(0) + " up")) << logs_[1].all();

  auto a = client_of(0);
  auto b = client_of(1);
  ASSERT_TRUE(a && b);
  const std::string text = "over the TLS mesh";
  const std::span<const uint8_t> data(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  // The link learns b's key asynchronously: send until the packet arrives.
  EXPECT_TRUE(eventually([&] {
    if (!a->send(b->self_public_key(), data)) return false;
    auto m = b->recv(100ms);
    if (!m) return false;
    const auto* p = std::get_if<ReceivedPacket>(&*m);
    return p && p->src == a->self_public_key() &&
           std::string(p->data.begin(), p->data.end()) == text;
  }));
  EXPECT_GE(relays_[0]->counters()["packets_forwarded_out"], 1);
}

// Without the CA the link is refused by certificate verification, and the log says so.
TEST_F(MeshTls, WithoutTheCaTheLinkFailsNamingTheCertificateProblem) {
  // The system store only (put back what the environment had after the test).
  const char* had = std::getenv("SSL_CERT_FILE");
  const std::optional<std::string> saved = had ? std::optional<std::string>(had) : std::nullopt;
  ::unsetenv("SSL_CERT_FILE");
  start_tls(0, "");
  start_tls(1, "");
  EXPECT_TRUE(logs_[0].wait_for("mesh link to " + https_url(1) + ": ")) << logs_[0].all();
  EXPECT_TRUE(
      logs_[0].wait_for("certificate verify failed: unable to get local issuer "
                        "certificate"))
      << logs_[0].all();
  EXPECT_EQ(relays_[0]->counters()["gauge_mesh_peers_connected"], 0);
  if (saved) ::setenv("SSL_CERT_FILE", saved->c_str(), 1);
}

TEST_F(MeshTls, BadMeshCaFileStopsTheRelayFromStarting) {
  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.mesh_key = *MeshKey::parse(std::string(64, 'c'));
  o.mesh_with = {"127.0.0.1:1"};
  o.mesh_ca_file = dir_ + "/missing.pem";
  auto s = Server::start(std::move(o));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().kind, ErrorKind::kUsage);
  EXPECT_NE(s.error().message.find("CA file " + dir_ + "/missing.pem"), std::string::npos)
      << s.error().message;
}

// derp-serve: --mesh-ca-file makes the link verify; without it (and no SSL_CERT_FILE) the link
// logs the verification failure; SSL_CERT_FILE naming the CA works as well.
TEST_F(MeshTls, DerpServeMeshCaFileOrSslCertFileVerifiesPeers) {
  const std::string both = addr(0) + "," + addr(1);
  {
    auto r0 = serve_tls(0, both, {"--mesh-ca-file", ca_file()});
    auto r1 = serve_tls(1, both, {"--mesh-ca-file", ca_file()});
    EXPECT_TRUE(r0->wait_for_line("mesh link to " + https_url(1) + " up", kWait)) << r0->err();
    EXPECT_TRUE(r1->wait_for_line("mesh link to " + https_url(0) + " up", kWait)) << r1->err();
    r0->signal(SIGTERM);
    r1->signal(SIGTERM);
    EXPECT_EQ(r0->wait(kWait).exit_code, 0) << r0->err();
    EXPECT_EQ(r1->wait(kWait).exit_code, 0) << r1->err();
  }
  {
    auto r0 = serve_tls(0, both, {});
    auto r1 = serve_tls(1, both, {});
    // (A try before the peer listens fails to connect instead: wait for the TLS failure.)
    auto line = r0->wait_for_line("certificate verify failed", kWait);
    ASSERT_TRUE(line) << r0->err();
    EXPECT_NE(line->find("mesh link to " + https_url(1) + ": "), std::string::npos) << *line;
    EXPECT_NE(line->find("unable to get local issuer certificate"), std::string::npos) << *line;
  }
  {
    auto r0 = serve_tls(0, both, {}, ca_file());
    auto r1 = serve_tls(1, both, {}, ca_file());
    EXPECT_TRUE(r0->wait_for_line("mesh link to " + https_url(1) + " up", kWait)) << r0->err();
    EXPECT_TRUE(r1->wait_for_line("mesh link to " + https_url(0) + " up", kWait)) << r1->err();
  }
}

// An explicit http:// URL is dialled as written: plain HTTP relays still mesh.
TEST_F(MeshTls, DerpServeExplicitHttpUrlsMeshPlainRelays) {
  std::vector<std::unique_ptr<Process>> relays;
  const std::string both = "http://" + addr(0) + "/derp,http://" + addr(1) + "/derp";
  for (int i = 0; i < 2; ++i) {
    relays.push_back(std::make_unique<Process>(
        kServeBin, std::vector<std::string>{"-a", addr(i), "--stun=false", "--threads", "1", "-c",
                                            dir_ + "/plain" + std::to_string(i) + ".key",
                                            "--mesh-psk-file", psk_file(), "--mesh-with", both}));
  }
  EXPECT_TRUE(relays[0]->wait_for_line("mesh link to http://" + addr(1) + "/derp up", kWait))
      << relays[0]->err();
  EXPECT_TRUE(relays[1]->wait_for_line("mesh link to http://" + addr(0) + "/derp up", kWait))
      << relays[1]->err();
  EXPECT_NE(relays[0]->err().find("skipping http://" + addr(0) + "/derp (this relay)"),
            std::string::npos)
      << relays[0]->err();
}

// A bad --mesh-ca-file is exit 2 naming the flag and the file, before the key file is written.
TEST_F(MeshTls, DerpServeRefusesAnUnreadableMeshCaFileBeforeWritingAnything) {
  const std::string key = dir_ + "/never.key";
  put_file(dir_ + "/not-pem.txt", "hello\n", 0644);
  for (const std::string& bad : {dir_ + "/missing.pem", dir_ + "/not-pem.txt"}) {
    auto r =
        run_tool("derp-serve", {"-a", "127.0.0.1:0", "--stun=false", "-c", key, "--mesh-psk-file",
                                psk_file(), "--mesh-with", addr(1), "--mesh-ca-file", bad});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("--mesh-ca-file: CA file " + bad), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(key));
  }
}

}  // namespace mesh_tls
}  // namespace derp::test
