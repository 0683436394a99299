// The PROXY protocol header, versions 1 and 2, against the examples and rules of HAProxy's
// proxy-protocol.txt: every split of the input (need more vs done), what is refused, and the
// encoders round-tripping.
#include "codec/proxy_protocol.h"

#include <gtest/gtest.h>

#include <string>

namespace derp {
namespace {

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

ProxyHeader parse_ok(const std::string& s) {
  auto r = parse_proxy_header(bytes(s));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r.ok()) return {};
  EXPECT_TRUE(r->has_value()) << "wanted a whole header";
  return r->value_or(ProxyHeader{});
}

std::string parse_error(const std::string& s) {
  auto r = parse_proxy_header(bytes(s));
  EXPECT_FALSE(r.ok()) << "parsed: " << s;
  return r.ok() ? "" : r.error().message;
}

// Every strict prefix needs more bytes; the whole parses to the same header.
void expect_incremental(const std::string& whole) {
  for (size_t n = 0; n < whole.size(); ++n) {
    auto r = parse_proxy_header(bytes(whole.substr(0, n)));
    ASSERT_TRUE(r.ok()) << n << ": " << r.error().message;
    EXPECT_FALSE(r->has_value()) << "complete after " << n << " of " << whole.size();
    EXPECT_TRUE(could_be_proxy_header(bytes(whole.substr(0, n))));
  }
}

TEST(ProxyProtocol, V1Tcp4) {
  const std::string h = "PROXY TCP4 127.0.0.2 127.0.0.11 56324 443\r\n";
  auto p = parse_ok(h + "GET /derp HTTP/1.1\r\n");
  EXPECT_EQ(p.version, 1);
  EXPECT_EQ(p.length, h.size());
  EXPECT_FALSE(p.local);
  EXPECT_TRUE(p.source.is_v4);
  EXPECT_EQ(p.source.to_string(), "127.0.0.2:56324");
  EXPECT_EQ(p.destination.to_string(), "127.0.0.11:443");
  expect_incremental(h);
}

TEST(ProxyProtocol, V1Tcp6AndUnknown) {
  auto p = parse_ok("PROXY TCP6 ::2 ::1 65535 8443\r\n");
  EXPECT_FALSE(p.source.is_v4);
  EXPECT_EQ(p.source.to_string(), "[::2]:65535");
  EXPECT_EQ(p.destination.to_string(), "[::1]:8443");
  auto u = parse_ok("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n");
  EXPECT_TRUE(u.local);
  EXPECT_TRUE(parse_ok("PROXY UNKNOWN\r\n").local);
}

TEST(ProxyProtocol, V1Refusals) {
  EXPECT_NE(parse_error("GET / HTTP/1.1\r\n").find("not a PROXY protocol header"),
            std::string::npos);
  EXPECT_NE(parse_error("PROXY UDP4 127.0.0.3 127.0.0.4 1 2\r\n").find("unknown version 1 protocol"),
            std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP4 127.0.3 127.0.0.4 1 2\r\n").find("bad IPv4 address"),
            std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP4 ::1 ::1 1 2\r\n").find("bad IPv4 address"), std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP6 127.0.0.3 ::1 1 2\r\n").find("bad IPv6 address"),
            std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP4 127.0.0.3 127.0.0.4 65536 2\r\n").find("bad port"),
            std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP4 127.0.0.3 127.0.0.4 -1 2\r\n").find("bad port"), std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP4 127.0.0.3 127.0.0.4 1\r\n").find("4 fields"), std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP4 127.0.0.3 127.0.0.4 1 2 3\r\n").find("4 fields"),
            std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP4  127.0.0.3 127.0.0.4 1 2\r\n").find("4 fields"),
            std::string::npos);  // two spaces: an empty field
  EXPECT_NE(parse_error("PROXY TCP4 127.0.0.3 127.0.0.4 1 2\n").find("without CRLF"),
            std::string::npos);
  EXPECT_NE(parse_error("PROXY TCP4 " + std::string(120, '1')).find("longer than 107"),
            std::string::npos);
}

std::string v2(uint8_t ver_cmd, uint8_t fam, const std::string& addr) {
  std::string s("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);
  s.push_back(static_cast<char>(ver_cmd));
  s.push_back(static_cast<char>(fam));
  s.push_back(static_cast<char>(addr.size() >> 8));
  s.push_back(static_cast<char>(addr.size() & 0xff));
  return s + addr;
}

TEST(ProxyProtocol, V2Tcp4WithTlvs) {
  // 127.0.0.7:40000 -> 127.0.0.1:443, then a 7-byte TLV (PP2_TYPE_AUTHORITY "a.b") that is skipped.
  const std::string addr("\x7f\x00\x00\x07\x7f\x00\x00\x01\x9c\x40\x01\xbb", 12);
  const std::string tlv(
      "\x02\x00\x03"
      "a.b",
      6);
  const std::string h = v2(0x21, 0x11, addr + tlv);
  auto p = parse_ok(h + "\x16\x03\x01");
  EXPECT_EQ(p.version, 2);
  EXPECT_EQ(p.length, h.size());
  EXPECT_EQ(p.source.to_string(), "127.0.0.7:40000");
  EXPECT_EQ(p.destination.to_string(), "127.0.0.1:443");
  expect_incremental(h);
}

TEST(ProxyProtocol, V2Tcp6LocalAndOtherFamilies) {
  std::string addr(36, '\0');
  addr[15] = 1;  // src ::1
  addr[31] = 3;                 // dst ::3
  addr[32] = 0x12, addr[33] = 0x34, addr[34] = 0, addr[35] = 80;
  auto p = parse_ok(v2(0x21, 0x21, addr));
  EXPECT_EQ(p.source.to_string(), "[::1]:4660");
  EXPECT_EQ(p.destination.to_string(), "[::3]:80");
  EXPECT_TRUE(parse_ok(v2(0x20, 0x11, std::string(12, 'x'))).local);  // LOCAL: health check
  EXPECT_TRUE(parse_ok(v2(0x20, 0x00, "")).local);
  EXPECT_TRUE(parse_ok(v2(0x21, 0x00, "")).local);                     // UNSPEC
  EXPECT_TRUE(parse_ok(v2(0x21, 0x12, std::string(12, 'x'))).local);   // UDP4
  EXPECT_TRUE(parse_ok(v2(0x21, 0x31, std::string(216, 'x'))).local);  // UNIX
}

TEST(ProxyProtocol, V2Refusals) {
  EXPECT_NE(parse_error(v2(0x11, 0x11, std::string(12, 'x'))).find("version 1"), std::string::npos);
  EXPECT_NE(parse_error(v2(0x22, 0x11, std::string(12, 'x'))).find("unknown version 2 command"),
            std::string::npos);
  EXPECT_NE(parse_error(v2(0x21, 0x11, std::string(8, 'x'))).find("want 12"), std::string::npos);
  EXPECT_NE(parse_error(v2(0x21, 0x21, std::string(12, 'x'))).find("want 36"), std::string::npos);
  std::string bent = v2(0x21, 0x11, std::string(12, 'x'));
  bent[5] = 0x0c;
  EXPECT_NE(parse_error(bent).find("signature"), std::string::npos);
  EXPECT_FALSE(could_be_proxy_header(bytes(std::string("\x16\x03\x01", 3))));  // a ClientHello
  EXPECT_FALSE(could_be_proxy_header(bytes("GET ")));
}

TEST(ProxyProtocol, EncodersRoundTrip) {
  ProxyAddress s4, d4;
  const uint8_t a[4] = {127, 0, 0, 2}, b[4] = {127, 0, 0, 1};
  s4.is_v4 = d4.is_v4 = true;
  s4.ip16[10] = s4.ip16[11] = d4.ip16[10] = d4.ip16[11] = 0xff;
  std::copy(a, a + 4, s4.ip16.begin() + 12);
  std::copy(b, b + 4, d4.ip16.begin() + 12);
  s4.port = 5000;
  d4.port = 3340;
  const std::string one = encode_proxy_v1(s4, d4);
  EXPECT_EQ(one, "PROXY TCP4 127.0.0.2 127.0.0.1 5000 3340\r\n");
  const std::string two = encode_proxy_v2(s4, d4);
  EXPECT_EQ(two.size(), 28u);
  for (const auto& h : {one, two}) {
    auto p = parse_ok(h);
    EXPECT_EQ(p.source.to_string(), "127.0.0.2:5000");
    EXPECT_EQ(p.destination.to_string(), "127.0.0.1:3340");
    EXPECT_EQ(p.length, h.size());
  }
  ProxyAddress s6, d6;
  s6.ip16[15] = 1;
  d6.ip16[15] = 1;
  s6.port = 1;
  d6.port = 2;
  EXPECT_EQ(parse_ok(encode_proxy_v2(s6, d6)).source.to_string(), "[::1]:1");
  EXPECT_EQ(encode_proxy_v1(s6, d6), "PROXY TCP6 ::1 ::1 1 2\r\n");
}

}  // namespace
}  // namespace derp
