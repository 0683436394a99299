// STUN codec: PROTOCOL.md §9.1–9.2 and the §11 vectors, plus real servers' responses from
// Tailscale's net/stun tests.
#include "derp/stun.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "derp/key.h"

namespace derp::stun {
namespace {

std::vector<uint8_t> hex_bytes(std::string_view spaced) {
  std::string hex;
  for (char c : spaced) {
    if (c != ' ' && c != '\n') hex += c;
  }
  auto raw = from_hex(hex);
  EXPECT_TRUE(raw.ok()) << spaced;
  if (!raw.ok()) return {};
  return std::vector<uint8_t>(raw->begin(), raw->end());
}

std::string hex_of(std::span<const uint8_t> b) { return to_hex(b.data(), b.size()); }

TxId tx_01_to_0c() { return {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}; }

// Bit-at-a-time CRC-32/IEEE: an independent check of the library's table-driven one.
uint32_t slow_crc32(std::span<const uint8_t> data) {
  uint32_t c = 0xffffffffu;
  for (uint8_t b : data) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

// Rewrites the FINGERPRINT value at the end of `req` so that it is correct again.
void refingerprint(std::vector<uint8_t>& req) {
  const uint32_t fp = slow_crc32(std::span<const uint8_t>(req).first(req.size() - 8)) ^ 0x5354554eu;
  const size_t at = req.size() - 4;
  req[at] = static_cast<uint8_t>(fp >> 24);
  req[at + 1] = static_cast<uint8_t>(fp >> 16);
  req[at + 2] = static_cast<uint8_t>(fp >> 8);
  req[at + 3] = static_cast<uint8_t>(fp);
}

std::vector<uint8_t> request_bytes(const TxId& tx) {
  std::vector<uint8_t> out(kRequestLen);
  encode_binding_request(std::span<uint8_t, kRequestLen>(out.data(), kRequestLen), tx);
  return out;
}

constexpr std::string_view kRequestVector =
    "0001 0014 2112a442 0102030405060708090a0b0c 8022 0008 7461696c6e6f6465 8028 0004 b32c370f";
constexpr std::string_view kResponseV4Vector =
    "0101 000c 2112a442 0102030405060708090a0b0c 0020 0008 00 01 f523 e721c04b";
constexpr std::string_view kResponseV6Vector =
    "0101 0018 2112a442 0102030405060708090a0b0c 0020 0014 00 02 f523 "
    "0113a9fa0102030405060708090a0b0d";

Endpoint v6_endpoint(std::string_view hex16, uint16_t port) {
  auto b = hex_bytes(hex16);
  std::array<uint8_t, 16> ip{};
  std::copy(b.begin(), b.end(), ip.begin());
  return Endpoint::v6(ip, port);
}

void expect_request_rejected(const std::vector<uint8_t>& packet, std::string_view needle) {
  auto r = parse_binding_request(packet);
  ASSERT_FALSE(r.ok()) << hex_of(packet);
  EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
}

// ---- Requests

TEST(StunRequest, EncodesTheSection11VectorExactly) {
  EXPECT_EQ(hex_of(request_bytes(tx_01_to_0c())), hex_of(hex_bytes(kRequestVector)));
}

TEST(StunRequest, FingerprintIsCrc32OfTheFirst32BytesXorStun) {
  const auto req = request_bytes(tx_01_to_0c());
  auto copy = req;
  refingerprint(copy);
  EXPECT_EQ(copy, req);
}

TEST(StunRequest, SoftwareIsTheFirstAttributeForTheXdpResponder) {
  const auto req = request_bytes(new_tx_id());
  EXPECT_EQ(hex_of(std::span<const uint8_t>(req).subspan(20, 12)), "802200087461696c6e6f6465");
}

TEST(StunRequest, ParsesTheSection11Vector) {
  auto tx = parse_binding_request(hex_bytes(kRequestVector));
  ASSERT_TRUE(tx.ok()) << tx.error().message;
  EXPECT_EQ(*tx, tx_01_to_0c());
}

TEST(StunRequest, RoundTripsARandomTransactionId) {
  const TxId a = new_tx_id();
  const TxId b = new_tx_id();
  EXPECT_NE(a, b);
  auto parsed = parse_binding_request(request_bytes(a));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, a);
}

TEST(StunRequest, RejectsWrongSoftware) {
  auto req = request_bytes(tx_01_to_0c());
  req[31] = 'f';  // "tailnodf", with a correct fingerprint
  refingerprint(req);
  expect_request_rejected(req, "SOFTWARE");
}

TEST(StunRequest, RejectsMissingSoftware) {
  // Header (length 8) + FINGERPRINT only.
  auto req = hex_bytes("0001 0008 2112a442 0102030405060708090a0b0c 8028 0004 00000000");
  refingerprint(req);
  expect_request_rejected(req, "SOFTWARE");
}

TEST(StunRequest, RejectsMissingFingerprint) {
  auto req = request_bytes(tx_01_to_0c());
  req.resize(32);
  req[3] = 12;
  expect_request_rejected(req, "not FINGERPRINT");
}

TEST(StunRequest, RejectsABadFingerprint) {
  auto req = request_bytes(tx_01_to_0c());
  req[39] ^= 1;
  expect_request_rejected(req, "FINGERPRINT 0x");
  // A changed byte under the CRC is caught too.
  req = request_bytes(tx_01_to_0c());
  req[8] ^= 0x80;
  expect_request_rejected(req, "is wrong");
}

TEST(StunRequest, RejectsFingerprintThatIsNotLast) {
  auto req = request_bytes(tx_01_to_0c());
  for (uint8_t b : {0x80, 0x22, 0x00, 0x00}) req.push_back(b);  // an empty attribute after it
  req[3] = 24;
  expect_request_rejected(req, "not FINGERPRINT");
}

TEST(StunRequest, RejectsWrongCookie) {
  auto req = request_bytes(tx_01_to_0c());
  req[4] = 0x22;
  expect_request_rejected(req, "magic cookie");
}

TEST(StunRequest, RejectsShortPackets) {
  auto req = request_bytes(tx_01_to_0c());
  req.resize(19);
  expect_request_rejected(req, "shorter than the 20-byte header");
  expect_request_rejected({}, "0 bytes");
}

TEST(StunRequest, RejectsTopBitsSet) {
  for (uint8_t bit : {0x80, 0x40}) {
    auto req = request_bytes(tx_01_to_0c());
    req[0] |= bit;
    expect_request_rejected(req, "top two bits");
  }
}

TEST(StunRequest, RejectsAResponse) {
  expect_request_rejected(hex_bytes(kResponseV4Vector), "not a binding request");
}

TEST(StunRequest, RejectsTruncatedAttributes) {
  auto req = request_bytes(tx_01_to_0c());
  req.resize(38);
  expect_request_rejected(req, "claims 4 bytes");
  req.resize(22);
  expect_request_rejected(req, "truncated attribute header");
}

TEST(StunRequest, IsStunFollowsGo) {
  std::vector<uint8_t> p(20, 0);
  EXPECT_FALSE(is_stun(p));
  std::copy(kMagicCookie.begin(), kMagicCookie.end(), p.begin() + 4);
  EXPECT_TRUE(is_stun(p));
  p[0] = 0x20;  // non-zero first byte, top bits clear
  EXPECT_TRUE(is_stun(p));
  p[0] = 0x40;
  EXPECT_FALSE(is_stun(p));
  p.resize(19);
  p[0] = 0;
  EXPECT_FALSE(is_stun(p));
}

// ---- Responses

TEST(StunResponse, EncodesTheSection11Ipv4VectorExactly) {
  uint8_t buf[kMaxResponseLen];
  const size_t n =
      encode_binding_response(buf, tx_01_to_0c(), Endpoint::v4({198, 51, 100, 9}, 54321));
  ASSERT_EQ(n, kResponseV4Len);
  EXPECT_EQ(hex_of(std::span<const uint8_t>(buf, n)), hex_of(hex_bytes(kResponseV4Vector)));
}

TEST(StunResponse, EncodesTheSection11Ipv6VectorExactly) {
  uint8_t buf[kMaxResponseLen];
  const auto ep = v6_endpoint("20010db8000000000000000000000001", 54321);
  const size_t n = encode_binding_response(buf, tx_01_to_0c(), ep);
  ASSERT_EQ(n, kResponseV6Len);
  EXPECT_EQ(hex_of(std::span<const uint8_t>(buf, n)), hex_of(hex_bytes(kResponseV6Vector)));
}

TEST(StunResponse, ParsesTheSection11Vectors) {
  auto v4 = parse_binding_response(hex_bytes(kResponseV4Vector));
  ASSERT_TRUE(v4.ok()) << v4.error().message;
  EXPECT_EQ(v4->tx_id, tx_01_to_0c());
  EXPECT_EQ(v4->mapped, Endpoint::v4({198, 51, 100, 9}, 54321));

  auto v6 = parse_binding_response(hex_bytes(kResponseV6Vector));
  ASSERT_TRUE(v6.ok()) << v6.error().message;
  EXPECT_EQ(v6->tx_id, tx_01_to_0c());
  EXPECT_FALSE(v6->mapped.is_v4);
  EXPECT_EQ(v6->mapped, v6_endpoint("20010db8000000000000000000000001", 54321));
}

TEST(StunResponse, ReportsTooSmallBuffer) {
  uint8_t buf[kResponseV4Len];
  EXPECT_EQ(encode_binding_response(buf, tx_01_to_0c(), Endpoint::v4({1, 2, 3, 4}, 1)),
            kResponseV4Len);
  EXPECT_EQ(encode_binding_response(buf, tx_01_to_0c(),
                                    v6_endpoint("00010000000000000000000000000004", 1)),
            0u);
}

TEST(StunResponse, RoundTripsBothFamilies) {
  const std::vector<Endpoint> eps = {Endpoint::v4({1, 2, 3, 4}, 254),
                                     Endpoint::v4({1, 2, 3, 4}, 257),
                                     v6_endpoint("00010000000000000000000000000004", 254),
                                     v6_endpoint("00010000000000000000000000000004", 65535)};
  for (const auto& ep : eps) {
    const TxId tx = new_tx_id();
    uint8_t buf[kMaxResponseLen];
    const size_t n = encode_binding_response(buf, tx, ep);
    auto r = parse_binding_response(std::span<const uint8_t>(buf, n));
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->tx_id, tx);
    EXPECT_EQ(r->mapped, ep) << ep.to_string();
  }
}

TEST(StunResponse, DualStackAnswerUsesFamily02AndIsUnmappedOnParse) {
  // derper on a dual-stack socket sees an IPv4 client as ::ffff:a.b.c.d and answers family 02.
  const Endpoint seen = Endpoint::v6(map_v4({198, 51, 100, 9}), 54321);
  uint8_t buf[kMaxResponseLen];
  const size_t n = encode_binding_response(buf, tx_01_to_0c(), seen);
  ASSERT_EQ(n, kResponseV6Len);
  EXPECT_EQ(buf[25], 0x02);
  auto r = parse_binding_response(std::span<const uint8_t>(buf, n));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->mapped.is_v4);
  EXPECT_EQ(r->mapped, Endpoint::v4({198, 51, 100, 9}, 54321));

  // Unmapping first gives the XDP responder's family-01 answer, the §11 IPv4 vector.
  const size_t n4 = encode_binding_response(buf, tx_01_to_0c(), unmap(seen));
  EXPECT_EQ(hex_of(std::span<const uint8_t>(buf, n4)), hex_of(hex_bytes(kResponseV4Vector)));
}

TEST(StunResponse, ParsesGoogle1) {
  auto r = parse_binding_response(
      hex_bytes("0101000c 2112a442 2360b11e3ec68ffa93e08007 00200008 0001c786 6957856f"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(hex_of(r->tx_id), "2360b11e3ec68ffa93e08007");
  EXPECT_EQ(r->mapped, Endpoint::v4({72, 69, 33, 45}, 59028));
}

TEST(StunResponse, ParsesGoogle2) {
  auto r = parse_binding_response(
      hex_bytes("0101000c 2112a442 f9f121cbde7d7c75923ce271 00200008 0001c787 6957856f"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->mapped, Endpoint::v4({72, 69, 33, 45}, 59029));
}

TEST(StunResponse, FallsBackToMappedAddress) {
  // stun.powervoip.com: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS; no XOR form.
  auto r = parse_binding_response(
      hex_bytes("01010024 2112a442 7e57966829f444609d1deaa6 00010008 0001e9d3 4845212d"
                "00040008 00010d96 4d48a9d4 00050008 00010d97 4d48a9d5"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->mapped, Endpoint::v4({72, 69, 33, 45}, 59859));
}

TEST(StunResponse, PrefersXorMappedAddressOverMappedAddress) {
  // MAPPED-ADDRESS {1, 2, 3, 4} port 1000 after XOR-MAPPED-ADDRESS {198, 51, 100, 9} port 54321
  // (parsed only, never dialled).
  auto r = parse_binding_response(
      hex_bytes("01010018 2112a442 0102030405060708090a0b0c 00200008 0001f523 e721c04b"
                "00010008 000103e8 01020304"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->mapped, Endpoint::v4({198, 51, 100, 9}, 54321));
}

TEST(StunResponse, AcceptsXorMappedAddress8020) {
  // stun.sipgate.net: MAPPED-ADDRESS, SOURCE, CHANGED, 0x8020, SOFTWARE.
  auto r = parse_binding_response(
      hex_bytes("01010044 2112a442 482eb64715e8b28eaead6444 00010008 0001e4ab 4845212d"
                "00040008 00012710 d90a4498 00050008 00012711 d9747a8a 80200008 0001c5b9 6957856f"
                "80220010 566f766964612e6f726720302e393600"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->mapped, Endpoint::v4({72, 69, 33, 45}, 58539));

  // Only the 0x8020 form, with a value that differs from any fallback.
  auto only = parse_binding_response(
      hex_bytes("0101000c 2112a442 0102030405060708090a0b0c 80200008 0001f523 e721c04b"));
  ASSERT_TRUE(only.ok()) << only.error().message;
  EXPECT_EQ(only->mapped, Endpoint::v4({198, 51, 100, 9}, 54321));
}

TEST(StunResponse, IgnoresTrailingGarbage) {
  // An in-process pion server: SOFTWARE "endpointer" (padded), XOR-MAPPED, FINGERPRINT, then
  // 8 bytes beyond the header length.
  auto r = parse_binding_response(
      hex_bytes("01010024 2112a442 ebc2d36ef471217c4f3e308e 8022000a 656e64706f696e7465720000"
                "00200008 0001ce66 5e12a443 80280004 b699bb02 01010024 2112a442"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->mapped.to_string(), "127.0.0.1:61300");

  auto v4 = hex_bytes(kResponseV4Vector);
  for (uint8_t b : {0xde, 0xad, 0xbe}) v4.push_back(b);
  auto r2 = parse_binding_response(v4);
  ASSERT_TRUE(r2.ok()) << r2.error().message;
  EXPECT_EQ(r2->mapped, Endpoint::v4({198, 51, 100, 9}, 54321));
}

TEST(StunResponse, WalksPaddedAttributes) {
  // SOFTWARE "a" (1 byte + 3 padding) before XOR-MAPPED-ADDRESS.
  auto r = parse_binding_response(
      hex_bytes("01010014 2112a442 ebc2d36ef471217c4f3e308e 80220001 61000000"
                "00200008 0001ce66 5e12a443"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->mapped.to_string(), "127.0.0.1:61300");
}

TEST(StunResponse, ParsesAnIpv6ServerResponse) {
  // stuntman: MAPPED-ADDRESS (v6), 0x802b, XOR-MAPPED-ADDRESS (v6).
  auto r =
      parse_binding_response(hex_bytes("01010048 2112a442 06f56685d28af3e69ce341e2 00010014 "
                                       "000290ce 260200d1b4cfc10038b231fffeef96f6"
                                       "802b0014 00020d96 2604a880000200d10000000000c57001 "
                                       "00200014 0002b1dc 0710a493b23aa785ea38c219620cd714"));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->mapped.to_string(), "[2602:d1:b4cf:c100:38b2:31ff:feef:96f6]:37070");
}

TEST(StunResponse, RejectsMalformedResponses) {
  auto expect_error = [](std::string_view hex, std::string_view needle) {
    auto r = parse_binding_response(hex_bytes(hex));
    ASSERT_FALSE(r.ok()) << hex;
    EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
    EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
  };
  expect_error(kRequestVector, "not a binding success");
  expect_error("0101000c 2112a443 0102030405060708090a0b0c 00200008 0001f523 e721c04b",
               "not a STUN packet");
  expect_error("0101000c 2112a442 0102030405060708", "shorter than the 20-byte header");
  expect_error("01010010 2112a442 0102030405060708090a0b0c 00200008 0001f523 e721c04b",
               "header length 16 exceeds");
  expect_error("0101000c 2112a442 0102030405060708090a0b0c 00200008 0003f523 e721c04b",
               "malformed address attribute 0x0020");
  expect_error("01010008 2112a442 0102030405060708090a0b0c 00200004 0001f523",
               "malformed address attribute");
  expect_error("0101000c 2112a442 0102030405060708090a0b0c 80220008 7461696c6e6f6465",
               "no XOR-MAPPED-ADDRESS or MAPPED-ADDRESS");
  expect_error("01010000 2112a442 0102030405060708090a0b0c", "no XOR-MAPPED-ADDRESS");
}

// ---- Endpoint helpers

TEST(StunEndpoint, MapsAndUnmapsIpv4) {
  const auto mapped = map_v4({127, 0, 113, 7});
  EXPECT_TRUE(is_v4_mapped(mapped));
  EXPECT_EQ(to_hex(mapped.data(), mapped.size()), "00000000000000000000ffff7f007107");
  const Endpoint six = Endpoint::v6(mapped, 41641);
  EXPECT_FALSE(six.is_v4);
  EXPECT_EQ(six.to_string(), "[::ffff:127.0.113.7]:41641");
  const Endpoint four = unmap(six);
  EXPECT_TRUE(four.is_v4);
  EXPECT_EQ(four.to_string(), "127.0.113.7:41641");
  EXPECT_EQ(four.v4_bytes(), (std::array<uint8_t, 4>{127, 0, 113, 7}));
  EXPECT_EQ(map_to_v6(four), six);
  EXPECT_NE(four, six);
}

TEST(StunEndpoint, LeavesNativeIpv6Alone) {
  const Endpoint ep = v6_endpoint("20010db8000000000000000000000001", 1);
  EXPECT_FALSE(is_v4_mapped(ep.ip16));
  EXPECT_EQ(unmap(ep), ep);
  EXPECT_EQ(map_to_v6(ep), ep);
}

}  // namespace
}  // namespace derp::stun
