#include "support/test_ca.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>

namespace derp::test {

namespace {

std::string pem_of(X509* x) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(b, x);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string s(data, static_cast<size_t>(n > 0 ? n : 0));
  BIO_free(b);
  return s;
}

std::string pem_of(EVP_PKEY* k) {
  BIO* b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, k, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(b, &data);
  std::string s(data, static_cast<size_t>(n > 0 ? n : 0));
  BIO_free(b);
  return s;
}

void add_ext(X509* x, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX v3;
  X509V3_set_ctx_nodb(&v3);
  X509V3_set_ctx(&v3, issuer, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &v3, nid, value.c_str());
  ASSERT_NE(ext, nullptr) << "extension " << value;
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
}

X509* new_cert(EVP_PKEY* key, const std::string& cn, long not_before, long not_after) {
  static std::atomic<long> serial{5000};
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), not_before);
  X509_gmtime_adj(X509_getm_notAfter(x), not_after);
  X509_set_pubkey(x, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  return x;
}

template <class T>
T* read_pem(const std::string& pem, T* (*reader)(BIO*, T**, pem_password_cb*, void*)) {
  BIO* b = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  T* out = reader(b, nullptr, nullptr, nullptr);
  BIO_free(b);
  return out;
}

}  // namespace

TestCa make_test_ca(const std::string& common_name) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  const long day = 24 * 3600;
  X509* x = new_cert(key, common_name, -3600, 30 * day);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
  add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(x, x, NID_subject_key_identifier, "hash");
  EXPECT_GT(X509_sign(x, key, EVP_sha256()), 0);
  TestCa ca{pem_of(x), pem_of(key)};
  X509_free(x);
  EVP_PKEY_free(key);
  return ca;
}

TestCert make_cert_signed_by(const TestCa& ca, const TestCertSpec& spec) {
  TestCert out;
  X509* ca_cert = read_pem<X509>(ca.cert_pem, PEM_read_bio_X509);
  EVP_PKEY* ca_key = read_pem<EVP_PKEY>(ca.key_pem, PEM_read_bio_PrivateKey);
  EVP_PKEY* key = EVP_EC_gen("P-256");
  if (!ca_cert || !ca_key || !key) {
    ADD_FAILURE() << "cannot read the test CA or make a key";
    return out;
  }
  const long day = 24 * 3600;
  X509* x = new_cert(key, spec.common_name, spec.expired ? -2 * day : -3600,
                     spec.expired ? -day : 30 * day);
  X509_set_issuer_name(x, X509_get_subject_name(ca_cert));
  std::string san;
  for (const auto& d : spec.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : spec.ip_addrs) san += (san.empty() ? "IP:" : ",IP:") + ip;
  if (!san.empty()) add_ext(x, ca_cert, NID_subject_alt_name, san);
  add_ext(x, ca_cert, NID_ext_key_usage, "serverAuth");
  add_ext(x, ca_cert, NID_authority_key_identifier, "keyid:always");
  EXPECT_GT(X509_sign(x, ca_key, EVP_sha256()), 0);
  out.cert_pem = pem_of(x);
  out.key_pem = pem_of(key);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(x, EVP_sha256(), md, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned int i = 0; i < len; ++i) {
    out.sha256_hex.push_back(kHex[md[i] >> 4]);
    out.sha256_hex.push_back(kHex[md[i] & 15]);
  }
  X509_free(x);
  X509_free(ca_cert);
  EVP_PKEY_free(ca_key);
  EVP_PKEY_free(key);
  return out;
}

}  // namespace derp::test
