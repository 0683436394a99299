// The self-signed certificate derp-serve generates for an IP --hostname (certmode manual), field
// by field against what derper's createSelfSignedIPCert (cmd/derper/cert.go) writes: P-256 key
// in SEC1 PEM, random serial below 2^128, CN=<IP> as subject and issuer, one calendar year from
// now, digitalSignature + keyEncipherment (critical), serverAuth, CA:FALSE (critical), the IP as
// the only SAN, ECDSA-SHA256.
#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "derp/server.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

namespace fs = std::filesystem;

std::string selfsigned_read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class RelaySelfSignedCert : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-selfsigned-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    relay_.reset();
    fs::remove_all(dir_);
  }
  void start(const std::string& cert_dir) {
    ServerOptions o;
    o.cert_mode = "manual";
    o.cert_dir = cert_dir;
    o.hostname = "127.0.0.1";
    before_ = std::time(nullptr);
    relay_ = start_relay(o);
    after_ = std::time(nullptr);
    ASSERT_TRUE(relay_);
  }
  X509* load_cert(const std::string& path) {
    const std::string pem = selfsigned_read(path);
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    X509* x = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    return x;
  }

  std::string dir_;
  std::time_t before_ = 0, after_ = 0;
  std::unique_ptr<Server> relay_;
};

TEST_F(RelaySelfSignedCert, FieldsMatchDerpersCreateSelfSignedIPCert) {
  start(dir_);
  X509* x = load_cert(dir_ + "/127.0.0.1.crt");
  ASSERT_NE(x, nullptr);

  // Subject and issuer: CN=127.0.0.1 and nothing else.
  X509_NAME* subject = X509_get_subject_name(x);
  EXPECT_EQ(X509_NAME_entry_count(subject), 1);
  char cn[64] = {};
  EXPECT_GT(X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof cn), 0);
  EXPECT_STREQ(cn, "127.0.0.1");
  EXPECT_EQ(X509_NAME_cmp(subject, X509_get_issuer_name(x)), 0);
  EXPECT_EQ(X509_get_version(x), 2);  // v3

  // Valid from now for one calendar year (365 or 366 days, to the second).
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
  EXPECT_TRUE(days == 365 || days == 366) << days;
  EXPECT_EQ(secs, 0);
  EXPECT_LE(X509_cmp_time(X509_get0_notBefore(x), &after_), 0);
  std::time_t early = before_ - 1;
  EXPECT_GE(X509_cmp_time(X509_get0_notBefore(x), &early), 0);

  // Serial: random, non-negative, at most 128 bits.
  BIGNUM* serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  ASSERT_NE(serial, nullptr);
  EXPECT_FALSE(BN_is_negative(serial));
  EXPECT_LE(BN_num_bits(serial), 128);
  EXPECT_GT(BN_num_bits(serial), 64);  // a 2^-64 chance of a false failure
  BN_free(serial);

  // A P-256 key, signed with ECDSA-SHA256.
  EVP_PKEY* pub = X509_get0_pubkey(x);
  ASSERT_NE(pub, nullptr);
  EXPECT_EQ(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
  char group[32] = {};
  size_t glen = 0;
  ASSERT_EQ(EVP_PKEY_get_group_name(pub, group, sizeof group, &glen), 1);
  EXPECT_STREQ(group, "prime256v1");
  EXPECT_EQ(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);

  // Usages and constraints.
  EXPECT_EQ(X509_get_key_usage(x), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
  EXPECT_EQ(X509_get_extended_key_usage(x), static_cast<uint32_t>(XKU_SSL_SERVER));
  EXPECT_EQ(X509_check_ca(x), 0);
  for (int nid : {NID_key_usage, NID_basic_constraints}) {
    const int at = X509_get_ext_by_NID(x, nid, -1);
    ASSERT_GE(at, 0) << OBJ_nid2sn(nid);
    EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(x, at)), 1) << OBJ_nid2sn(nid);
  }

  // The IP is the only SAN.
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  ASSERT_NE(sans, nullptr);
  ASSERT_EQ(sk_GENERAL_NAME_num(sans), 1);
  const GENERAL_NAME* san = sk_GENERAL_NAME_value(sans, 0);
  ASSERT_EQ(san->type, GEN_IPADD);
  const unsigned char want_ip[] = {127, 0, 0, 1};
  ASSERT_EQ(ASN1_STRING_length(san->d.iPAddress), 4);
  EXPECT_EQ(std::memcmp(ASN1_STRING_get0_data(san->d.iPAddress), want_ip, 4), 0);
  GENERAL_NAMES_free(sans);
  X509_free(x);

  // The key in SEC1 PEM, as Go's x509.MarshalECPrivateKey, readable by the owner only.
  const std::string key_pem = selfsigned_read(dir_ + "/127.0.0.1.key");
  EXPECT_EQ(key_pem.rfind("-----BEGIN EC PRIVATE KEY-----", 0), 0u) << key_pem.substr(0, 40);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/127.0.0.1.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(RelaySelfSignedCert, MissingCertDirIsCreatedOwnerOnly) {
  const std::string sub = dir_ + "/certs";
  start(sub);
  struct stat st {};
  ASSERT_EQ(::stat(sub.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(fs::exists(sub + "/127.0.0.1.crt"));
  EXPECT_FALSE(relay_->cert_pin().empty());
}

}  // namespace
}  // namespace derp::test
