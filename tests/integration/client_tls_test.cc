// derp::Client over https:// (PROTOCOL.md §6.3): a TLS proxy with a certificate made in the test
// fronts the in-process relay, so verification, pins and failures are exercised end to end.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include "derp/client.h"
#include "derp/server.h"
#include "support/process.h"
#include "support/tls_proxy.h"

namespace derp {
namespace {

using namespace std::chrono_literals;
using test::TestCert;
using test::TestCertSpec;
using test::TlsProxy;

class ClientTls : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    o.listen_addr = "127.0.0.1:0";
    o.threads = 1;
    auto s = Server::start(std::move(o));
    ASSERT_TRUE(s.ok()) << s.error().message;
    relay_ = std::move(*s);
  }

  // A proxy in front of the relay presenting a certificate made from `spec` (and a meta cert
  // carrying `meta_key`, if any).
  void front(const TestCertSpec& spec = {}, std::optional<NodePublic> meta_key = std::nullopt,
             bool max_tls12 = false) {
    cert_ = test::make_test_cert(spec);
    ca_file_ = test::write_temp_file("ca.pem", cert_.cert_pem);
    proxy_ = TlsProxy::start(cert_, relay_->port(), meta_key, max_tls12);
    ASSERT_TRUE(proxy_);
    where_ = "127.0.0.1:" + std::to_string(proxy_->port());
    url_ = "https://" + where_ + "/derp";
  }

  ClientOptions options() const {
    ClientOptions o;
    o.private_key = NodePrivate::generate();
    o.server_url = url_;
    o.connect_timeout = 5s;
    return o;
  }

  static std::unique_ptr<Client> create(ClientOptions o) {
    auto c = Client::create(std::move(o));
    EXPECT_TRUE(c.ok()) << c.error().message;
    return c.ok() ? std::move(*c) : nullptr;
  }

  // The error of a connect that must fail.
  static Error connect_error(ClientOptions o) {
    auto c = create(std::move(o));
    if (!c) return Error(ErrorKind::kInternal, "no client");
    auto r = c->connect();
    EXPECT_FALSE(r.ok());
    return r.ok() ? Error(ErrorKind::kInternal, "connected") : r.error();
  }

  std::unique_ptr<Server> relay_;
  TestCert cert_;
  std::string ca_file_;
  std::unique_ptr<TlsProxy> proxy_;
  std::string where_;
  std::string url_;
};

TEST_F(ClientTls, CaFileTrustsSelfSignedRelayForPingAndDelivery) {
  front();
  auto oa = options();
  oa.ca_file = ca_file_;
  auto ob = options();
  ob.ca_file = ca_file_;
  ob.server_key = relay_->public_key();
  auto a = create(oa);
  auto b = create(ob);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->connect().ok());
  auto rtt = a->ping(5s);
  ASSERT_TRUE(rtt.ok()) << rtt.error().message;
  EXPECT_EQ(a->server_public_key(), relay_->public_key());

  const std::string text = "over TLS";
  ASSERT_TRUE(a->send(b->self_public_key(),
                      std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()))
                  .ok());
  for (int i = 0; i < 16; ++i) {
    auto m = b->recv(5s);
    ASSERT_TRUE(m.ok()) << m.error().message;
    if (auto* p = std::get_if<ReceivedPacket>(&*m)) {
      EXPECT_EQ(p->src, a->self_public_key());
      EXPECT_EQ(std::string(p->data.begin(), p->data.end()), text);
      return;
    }
  }
  FAIL() << "B never received A's packet";
}

TEST_F(ClientTls, TlsInfoDescribesTheConnection) {
  front();
  auto o = options();
  o.ca_file = ca_file_;
  auto c = create(o);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->tls_info().has_value());
  ASSERT_TRUE(c->connect().ok());
  auto info = c->tls_info();
  ASSERT_TRUE(info.has_value());
  EXPECT_TRUE(info->version == "TLSv1.3" || info->version == "TLSv1.2") << info->version;
  EXPECT_FALSE(info->cipher.empty());
  EXPECT_EQ(info->subject, "CN=localhost");
  EXPECT_EQ(info->issuer, "CN=localhost");
  EXPECT_EQ(info->not_after.size(), std::string("2027-01-01T00:00:00Z").size()) << info->not_after;
  EXPECT_EQ(info->cert_sha256, "sha256-raw:" + cert_.sha256_hex);
  EXPECT_TRUE(info->verified);
  EXPECT_FALSE(info->meta_cert);
}

TEST_F(ClientTls, PlainHttpClientHasNoTlsInfo) {
  auto o = options();
  o.server_url = "http://127.0.0.1:" + std::to_string(relay_->port()) + "/derp";
  auto c = create(o);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->connect().ok());
  EXPECT_FALSE(c->tls_info().has_value());
}

TEST_F(ClientTls, WithoutCaFileSelfSignedCertificateFailsVerification) {
  front();
  auto e = connect_error(options());
  EXPECT_EQ(e.kind, ErrorKind::kTls);
  EXPECT_EQ(e.message, "TLS handshake with " + where_ +
                           ": certificate verify failed: self-signed certificate");
}

TEST_F(ClientTls, InsecureSkipsVerification) {
  front();
  auto o = options();
  o.insecure = true;
  auto c = create(o);
  ASSERT_TRUE(c);
  auto rtt = c->ping(5s);
  ASSERT_TRUE(rtt.ok()) << rtt.error().message;
  ASSERT_TRUE(c->tls_info().has_value());
  EXPECT_FALSE(c->tls_info()->verified);
}

TEST_F(ClientTls, Sha256RawPinOfTheCertificateConnectsWithoutChainTrust) {
  front();
  auto o = options();
  o.cert_name = "sha256-raw:" + cert_.sha256_hex;
  auto c = create(o);
  ASSERT_TRUE(c);
  auto rtt = c->ping(5s);
  ASSERT_TRUE(rtt.ok()) << rtt.error().message;
}

TEST_F(ClientTls, Sha256RawPinMismatchIsTlsError) {
  front();
  const std::string other = test::make_test_cert().sha256_hex;
  auto o = options();
  o.cert_name = "sha256-raw:" + other;
  auto e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kTls);
  EXPECT_EQ(e.message, "TLS handshake with " + where_ + ": certificate sha256 mismatch (expected " +
                           other + ", got " + cert_.sha256_hex + ")");
}

TEST_F(ClientTls, Sha256RawPinStillRequiresTheDialedAddressInTheCertificate) {
  front({.common_name = "relay", .dns_names = {"relay.example"}, .ip_addrs = {"127.0.0.2"}});
  auto o = options();
  o.cert_name = "sha256-raw:" + cert_.sha256_hex;
  auto e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kTls);
  EXPECT_EQ(e.message, "TLS handshake with " + where_ + ": certificate is not valid for 127.0.0.1");
}

TEST_F(ClientTls, ExpiredCertificateIsTlsErrorWithCaFileAndWithPin) {
  front({.expired = true});
  auto o = options();
  o.ca_file = ca_file_;
  auto e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kTls);
  EXPECT_NE(e.message.find("certificate verify failed: certificate has expired"), std::string::npos)
      << e.message;

  o = options();
  o.cert_name = "sha256-raw:" + cert_.sha256_hex;
  e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kTls);
  EXPECT_EQ(e.message, "TLS handshake with " + where_ + ": certificate expired");
}

TEST_F(ClientTls, CertificateForAnotherNameIsTlsError) {
  front({.common_name = "relay", .dns_names = {"relay.example"}, .ip_addrs = {"127.0.0.2"}});
  auto o = options();
  o.ca_file = ca_file_;
  auto e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kTls);
  EXPECT_EQ(e.message,
            "TLS handshake with " + where_ + ": certificate verify failed: IP address mismatch");
}

TEST_F(ClientTls, CertNameReplacesTheHostInTheNameCheck) {
  front({.common_name = "relay", .dns_names = {"relay.example"}, .ip_addrs = {}});
  auto o = options();
  o.ca_file = ca_file_;
  o.cert_name = "relay.example";
  auto c = create(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_TRUE(r.ok()) << r.error().message;

  o.cert_name = "other.example";
  auto e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kTls);
  EXPECT_EQ(e.message,
            "TLS handshake with " + where_ + ": certificate verify failed: hostname mismatch");
}

TEST_F(ClientTls, PlainHttpServerSpokenToWithHttpsIsTlsError) {
  auto o = options();
  const std::string where = "127.0.0.1:" + std::to_string(relay_->port());
  o.server_url = "https://" + where + "/derp";
  o.insecure = true;
  auto e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kTls);
  EXPECT_TRUE(e.message.starts_with("TLS handshake with " + where + ": ")) << e.message;
}

TEST_F(ClientTls, ServerSilentDuringTlsHandshakeIsTimeout) {
  // Listening but never accepting: the kernel completes TCP, nobody answers the ClientHello.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor silent(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address_v4("127.0.0.1"), 0));
  const std::string where = "127.0.0.1:" + std::to_string(silent.local_endpoint().port());
  auto o = options();
  o.server_url = "https://" + where + "/derp";
  o.insecure = true;
  o.connect_timeout = 300ms;
  auto e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kTimeout);
  EXPECT_EQ(e.message, "connect to " + where + ": timed out after 300ms (TLS handshake)");
}

TEST_F(ClientTls, UnreadableCaFileAndMalformedPinAreUsageErrors) {
  front();
  auto o = options();
  o.ca_file = ca_file_ + ".missing";
  auto c = Client::create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(c.error().message, "CA file " + o.ca_file + ": no such file or directory");

  o = options();
  o.ca_file = test::write_temp_file("notpem.txt", "not a certificate\n");
  c = Client::create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::kUsage);
  EXPECT_TRUE(c.error().message.starts_with("CA file " + o.ca_file + ": no PEM certificate"))
      << c.error().message;

  o = options();
  o.cert_name = "sha256-raw:abcd";
  c = Client::create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(c.error().message,
            "certificate pin \"sha256-raw:abcd\": expected sha256-raw: and 64 hex digits");
}

TEST_F(ClientTls, FastStartTakesTheServerKeyFromTheMetaCertificate) {
  front({}, relay_->public_key());
  auto o = options();
  o.ca_file = ca_file_;
  auto c = create(o);
  ASSERT_TRUE(c);
  auto rtt = c->ping(5s);
  ASSERT_TRUE(rtt.ok()) << rtt.error().message;
  EXPECT_EQ(c->server_public_key(), relay_->public_key());
  ASSERT_TRUE(c->tls_info().has_value());
  EXPECT_TRUE(c->tls_info()->meta_cert) << c->tls_info()->version;
  // The first message is still the relay's ServerInfo (the skipped ServerKey is not surfaced).
  auto m = c->recv(5s);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_TRUE(std::holds_alternative<ServerInfoMessage>(*m)) << received_message_name(*m);
}

TEST_F(ClientTls, FastStartWithAForgedMetaKeyFailsTheHandshake) {
  // The ClientInfo is sealed to the meta cert's key without waiting for ServerKey, so a key
  // that is not the relay's cannot work: this proves the 101 exchange was skipped.
  front({}, NodePrivate::generate().public_key());
  auto o = options();
  o.ca_file = ca_file_;
  auto e = connect_error(o);
  EXPECT_NE(e.kind, ErrorKind::kTls) << e.message;
}

TEST_F(ClientTls, FastStartMetaKeyMismatchingThePinIsProtocolError) {
  front({}, relay_->public_key());
  auto o = options();
  o.ca_file = ca_file_;
  o.server_key = NodePrivate::generate().public_key();
  auto e = connect_error(o);
  EXPECT_EQ(e.kind, ErrorKind::kProtocol);
  EXPECT_NE(e.message.find("TLS meta certificate"), std::string::npos) << e.message;
}

TEST_F(ClientTls, MetaCertificateIsIgnoredBelowTls13) {
  front({}, NodePrivate::generate().public_key(), /*max_tls12=*/true);
  auto o = options();
  o.ca_file = ca_file_;
  auto c = create(o);
  ASSERT_TRUE(c);
  auto r = c->connect();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(c->server_public_key(), relay_->public_key());
  ASSERT_TRUE(c->tls_info().has_value());
  EXPECT_EQ(c->tls_info()->version, "TLSv1.2");
  EXPECT_FALSE(c->tls_info()->meta_cert);
}

TEST_F(ClientTls, DerpPingToolWithCaFileExitsZero) {
  front();
  auto r = test::run_tool("derp-ping", {url_, "--ca-file", ca_file_, "--count", "1", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST_F(ClientTls, DerpPingToolWithoutCaFileExitsFiveWithTlsLayer) {
  front();
  auto r = test::run_tool("derp-ping", {url_, "--count", "1", "--json"});
  EXPECT_EQ(r.exit_code, 5) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(j.is_discarded()) << r.out;
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["layer"], "tls");
  EXPECT_EQ(j["error"]["message"], "TLS handshake with " + where_ +
                                       ": certificate verify failed: self-signed certificate");
}

TEST_F(ClientTls, DerpPingToolAcceptsPinAndInsecure) {
  front();
  auto pin = test::run_tool(
      "derp-ping", {url_, "--cert-name", "sha256-raw:" + cert_.sha256_hex, "--count", "1"});
  EXPECT_EQ(pin.exit_code, 0) << pin.err;
  auto insecure = test::run_tool("derp-ping", {url_, "--insecure", "--count", "1"});
  EXPECT_EQ(insecure.exit_code, 0) << insecure.err;
}

}  // namespace
}  // namespace derp
