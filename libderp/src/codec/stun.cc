// STUN binding request/response codec. PROTOCOL.md §9.1–9.2, §11.
#include "derp/stun.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sodium.h>

#include <cstring>

#include "codec/sodium_init.h"

namespace derp::stun {
namespace {

constexpr uint16_t kBindingRequest = 0x0001;
constexpr uint16_t kBindingSuccess = 0x0101;
constexpr uint16_t kAttrMappedAddress = 0x0001;
constexpr uint16_t kAttrXorMappedAddress = 0x0020;
// Not in the RFC, but some servers put XOR-MAPPED-ADDRESS in the comprehension-optional range.
constexpr uint16_t kAttrXorMappedAddressAlt = 0x8020;
constexpr uint16_t kAttrSoftware = 0x8022;
constexpr uint16_t kAttrFingerprint = 0x8028;
constexpr std::array<uint8_t, 8> kSoftware = {'t', 'a', 'i', 'l', 'n', 'o', 'd', 'e'};
constexpr size_t kFingerprintAttrLen = 8;  // type + length + CRC
constexpr uint32_t kFingerprintXor = 0x5354554e;

Error protocol_error(std::string msg) { return Error(ErrorKind::kProtocol, std::move(msg)); }

uint16_t get_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t get_u32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
void put_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put_u32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

// CRC-32/IEEE (reflected polynomial 0xedb88320), table built at compile time. Our own so the
// codec does not need zlib for eight bytes of fingerprint.
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = make_crc_table();

uint32_t crc32_ieee(std::span<const uint8_t> data) {
  uint32_t c = 0xffffffffu;
  for (uint8_t b : data) c = kCrcTable[(c ^ b) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

uint32_t fingerprint(std::span<const uint8_t> data) { return crc32_ieee(data) ^ kFingerprintXor; }

// Walks STUN attributes (type, length, value padded to 4 bytes) as Go's foreachAttr does: the
// padding of every attribute, the last included, must be present. `fn(type, value)`.
template <typename Fn>
Result<void> for_each_attr(std::span<const uint8_t> b, std::string_view what, Fn&& fn) {
  size_t offset = kHeaderLen;
  while (!b.empty()) {
    if (b.size() < 4) {
      return protocol_error(fmt::format("{}: truncated attribute header at byte {} ({} bytes left)",
                                        what, offset, b.size()));
    }
    const uint16_t type = get_u16(b.data());
    const size_t len = get_u16(b.data() + 2);
    const size_t padded = (len + 3) & ~size_t{3};
    b = b.subspan(4);
    if (padded > b.size()) {
      return protocol_error(
          fmt::format("{}: attribute 0x{:04x} at byte {} claims {} bytes, only {} left", what, type,
                      offset, len, b.size()));
    }
    fn(type, b.first(len));
    b = b.subspan(padded);
    offset += 4 + padded;
  }
  return {};
}

size_t family_addr_len(uint8_t family) {
  switch (family) {
    case 0x01:
      return 4;
    case 0x02:
      return 16;
    default:
      return 0;
  }
}

// Decodes a (XOR-)MAPPED-ADDRESS value: 0, family, port, address. With `xor_tx` the port and
// address are XORed with the cookie (and the transaction ID for IPv6). Unmaps ::ffff:a.b.c.d.
std::optional<Endpoint> decode_address(std::span<const uint8_t> v, const TxId* xor_tx) {
  if (v.size() < 4) return std::nullopt;
  const size_t addr_len = family_addr_len(v[1]);
  if (addr_len == 0 || v.size() - 4 < addr_len) return std::nullopt;
  uint16_t port = get_u16(v.data() + 2);
  std::array<uint8_t, 16> addr{};
  for (size_t i = 0; i < addr_len; ++i) {
    uint8_t mask = 0;
    if (xor_tx != nullptr) mask = i < 4 ? kMagicCookie[i] : (*xor_tx)[i - 4];
    addr[i] = v[4 + i] ^ mask;
  }
  if (xor_tx != nullptr) port ^= static_cast<uint16_t>(kMagicCookie[0] << 8 | kMagicCookie[1]);
  if (addr_len == 4) return Endpoint::v4({addr[0], addr[1], addr[2], addr[3]}, port);
  return unmap(Endpoint::v6(addr, port));
}

}  // namespace

// ---- Endpoint

Endpoint Endpoint::v4(const std::array<uint8_t, 4>& ip, uint16_t port) {
  return Endpoint{map_v4(ip), true, port};
}

Endpoint Endpoint::v6(const std::array<uint8_t, 16>& ip, uint16_t port) {
  return Endpoint{ip, false, port};
}

std::array<uint8_t, 4> Endpoint::v4_bytes() const {
  return {ip16[12], ip16[13], ip16[14], ip16[15]};
}

std::string Endpoint::to_string() const {
  if (is_v4) return fmt::format("{}.{}.{}.{}:{}", ip16[12], ip16[13], ip16[14], ip16[15], port);
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(AF_INET6, ip16.data(), text, sizeof(text));
  return fmt::format("[{}]:{}", text, port);
}

bool is_v4_mapped(const std::array<uint8_t, 16>& ip) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(ip.data(), kPrefix, sizeof(kPrefix)) == 0;
}

std::array<uint8_t, 16> map_v4(const std::array<uint8_t, 4>& ip) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, ip[0], ip[1], ip[2], ip[3]};
}

Endpoint unmap(const Endpoint& ep) {
  Endpoint out = ep;
  if (!ep.is_v4 && is_v4_mapped(ep.ip16)) out.is_v4 = true;
  return out;
}

Endpoint map_to_v6(const Endpoint& ep) {
  Endpoint out = ep;
  out.is_v4 = false;
  return out;
}

// ---- Requests

TxId new_tx_id() {
  codec::ensure_sodium();
  TxId tx;
  randombytes_buf(tx.data(), tx.size());
  return tx;
}

void encode_binding_request(std::span<uint8_t, kRequestLen> out, const TxId& tx_id) {
  uint8_t* p = out.data();
  put_u16(p, kBindingRequest);
  put_u16(p + 2, kRequestLen - kHeaderLen);  // set before the CRC, which covers it
  std::memcpy(p + 4, kMagicCookie.data(), kMagicCookie.size());
  std::memcpy(p + 8, tx_id.data(), tx_id.size());
  // SOFTWARE first: the XDP responder only recognises requests that start with it.
  put_u16(p + 20, kAttrSoftware);
  put_u16(p + 22, kSoftware.size());
  std::memcpy(p + 24, kSoftware.data(), kSoftware.size());
  put_u16(p + 32, kAttrFingerprint);
  put_u16(p + 34, 4);
  put_u32(p + 36, fingerprint(out.first(32)));
}

bool is_stun(std::span<const uint8_t> packet) {
  return packet.size() >= kHeaderLen && (packet[0] & 0xc0) == 0 &&
         std::memcmp(packet.data() + 4, kMagicCookie.data(), kMagicCookie.size()) == 0;
}

Result<TxId> parse_binding_request(std::span<const uint8_t> packet) {
  constexpr std::string_view kWhat = "STUN request";
  if (packet.size() < kHeaderLen) {
    return protocol_error(
        fmt::format("{}: {} bytes is shorter than the 20-byte header", kWhat, packet.size()));
  }
  if ((packet[0] & 0xc0) != 0) {
    return protocol_error(
        fmt::format("{}: top two bits of byte 0 are set (0x{:02x})", kWhat, packet[0]));
  }
  if (!is_stun(packet)) return protocol_error(fmt::format("{}: magic cookie missing", kWhat));
  const uint16_t type = get_u16(packet.data());
  if (type != kBindingRequest) {
    return protocol_error(
        fmt::format("{}: message type 0x{:04x} is not a binding request (0x0001)", kWhat, type));
  }
  TxId tx;
  std::memcpy(tx.data(), packet.data() + 8, tx.size());

  // Like derper, the header length field is not checked: every byte after the header is
  // walked as attributes.
  bool software_ok = false;
  std::optional<uint16_t> last_attr;
  uint32_t got_fp = 0;
  auto walked = for_each_attr(packet.subspan(kHeaderLen), kWhat,
                              [&](uint16_t attr, std::span<const uint8_t> v) {
                                last_attr = attr;
                                if (attr == kAttrSoftware && v.size() == kSoftware.size() &&
                                    std::memcmp(v.data(), kSoftware.data(), v.size()) == 0) {
                                  software_ok = true;
                                }
                                if (attr == kAttrFingerprint && v.size() == 4) {
                                  got_fp = get_u32(v.data());
                                }
                              });
  if (!walked) return std::move(walked).error();
  if (!software_ok) {
    return protocol_error(fmt::format("{}: no SOFTWARE attribute \"tailnode\"", kWhat));
  }
  if (last_attr != kAttrFingerprint) {
    return protocol_error(fmt::format("{}: last attribute is not FINGERPRINT", kWhat));
  }
  // A FINGERPRINT last and a SOFTWARE before it make the packet ≥ 20 + 12 + 4 bytes.
  const uint32_t want_fp = fingerprint(packet.first(packet.size() - kFingerprintAttrLen));
  if (got_fp != want_fp) {
    return protocol_error(fmt::format("{}: FINGERPRINT 0x{:08x} is wrong (expected 0x{:08x})",
                                      kWhat, got_fp, want_fp));
  }
  return tx;
}

// ---- Responses

size_t encode_binding_response(std::span<uint8_t> out, const TxId& tx_id, const Endpoint& mapped) {
  const size_t addr_len = mapped.is_v4 ? 4 : 16;
  const size_t total = kHeaderLen + 8 + addr_len;
  if (out.size() < total) return 0;
  uint8_t* p = out.data();
  put_u16(p, kBindingSuccess);
  put_u16(p + 2, static_cast<uint16_t>(total - kHeaderLen));
  std::memcpy(p + 4, kMagicCookie.data(), kMagicCookie.size());
  std::memcpy(p + 8, tx_id.data(), tx_id.size());
  put_u16(p + 20, kAttrXorMappedAddress);
  put_u16(p + 22, static_cast<uint16_t>(4 + addr_len));
  p[24] = 0;
  p[25] = mapped.is_v4 ? 0x01 : 0x02;
  put_u16(p + 26, mapped.port ^ static_cast<uint16_t>(kMagicCookie[0] << 8 | kMagicCookie[1]));
  const uint8_t* addr = mapped.ip16.data() + (16 - addr_len);
  for (size_t i = 0; i < addr_len; ++i) {
    p[28 + i] = addr[i] ^ (i < 4 ? kMagicCookie[i] : tx_id[i - 4]);
  }
  return total;
}

Result<BindingResponse> parse_binding_response(std::span<const uint8_t> packet) {
  constexpr std::string_view kWhat = "STUN response";
  if (!is_stun(packet)) {
    if (packet.size() < kHeaderLen) {
      return protocol_error(
          fmt::format("{}: {} bytes is shorter than the 20-byte header", kWhat, packet.size()));
    }
    return protocol_error(
        fmt::format("{}: not a STUN packet (top bits set or no magic cookie)", kWhat));
  }
  BindingResponse r;
  std::memcpy(r.tx_id.data(), packet.data() + 8, r.tx_id.size());
  const uint16_t type = get_u16(packet.data());
  if (type != kBindingSuccess) {
    return protocol_error(
        fmt::format("{}: message type 0x{:04x} is not a binding success (0x0101)", kWhat, type));
  }
  const size_t attrs_len = get_u16(packet.data() + 2);
  auto attrs = packet.subspan(kHeaderLen);
  if (attrs_len > attrs.size()) {
    return protocol_error(fmt::format("{}: header length {} exceeds the {} attribute bytes", kWhat,
                                      attrs_len, attrs.size()));
  }
  attrs = attrs.first(attrs_len);  // some servers pad the datagram; ignore what follows

  std::optional<Endpoint> xor_addr;
  std::optional<Endpoint> fallback;
  std::optional<uint16_t> bad_attr;
  auto walked = for_each_attr(attrs, kWhat, [&](uint16_t attr, std::span<const uint8_t> v) {
    if (bad_attr) return;
    if (attr == kAttrXorMappedAddress || attr == kAttrXorMappedAddressAlt) {
      auto ep = decode_address(v, &r.tx_id);
      if (!ep) bad_attr = attr;
      xor_addr = ep;  // the last one wins, as in Go
    } else if (attr == kAttrMappedAddress) {
      auto ep = decode_address(v, nullptr);
      if (!ep) bad_attr = attr;
      fallback = ep;
    }
  });
  if (!walked) return std::move(walked).error();
  if (bad_attr) {
    return protocol_error(fmt::format(
        "{}: malformed address attribute 0x{:04x} (short or unknown family)", kWhat, *bad_attr));
  }
  if (xor_addr) {
    r.mapped = *xor_addr;
  } else if (fallback) {
    r.mapped = *fallback;
  } else {
    return protocol_error(
        fmt::format("{}: no XOR-MAPPED-ADDRESS or MAPPED-ADDRESS attribute", kWhat));
  }
  return r;
}

}  // namespace derp::stun
