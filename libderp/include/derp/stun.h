// STUN binding requests and responses, the RFC 5389 subset Tailscale uses. I/O-free.
// PROTOCOL.md §9.1 (request and derper's filter), §9.2 (response), §11 (test vectors).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "derp/result.h"

namespace derp::stun {

inline constexpr size_t kHeaderLen = 20;
inline constexpr size_t kRequestLen = 40;     // what Tailscale always sends
inline constexpr size_t kResponseV4Len = 32;  // header + XOR-MAPPED-ADDRESS, family 01
inline constexpr size_t kResponseV6Len = 44;  // header + XOR-MAPPED-ADDRESS, family 02
inline constexpr size_t kMaxResponseLen = kResponseV6Len;
inline constexpr uint16_t kDefaultPort = 3478;
inline constexpr std::array<uint8_t, 4> kMagicCookie = {0x21, 0x12, 0xa4, 0x42};

using TxId = std::array<uint8_t, 12>;

// A fresh transaction ID from libsodium's CSPRNG.
TxId new_tx_id();

// An IP address and UDP port. IPv4 is stored as ::ffff:a.b.c.d in ip16 with is_v4 set, so
// both families share one layout (as in PeerPresent frames). is_v4 = false with a mapped
// ip16 is a distinct value: "the IPv6 form of an IPv4 address", which is what a dual-stack
// socket reports for an IPv4 peer.
struct Endpoint {
  std::array<uint8_t, 16> ip16{};
  bool is_v4 = false;
  uint16_t port = 0;

  // a.b.c.d:port.
  static Endpoint v4(const std::array<uint8_t, 4>& ip, uint16_t port);
  // [ip]:port, kept as IPv6 even when ip is IPv4-mapped.
  static Endpoint v6(const std::array<uint8_t, 16>& ip, uint16_t port);

  // The four IPv4 bytes (ip16[12..16)); meaningful when is_v4.
  std::array<uint8_t, 4> v4_bytes() const;
  // "198.51.100.9:54321" or "[2001:db8::1]:54321" (RFC 5952 text for IPv6).
  std::string to_string() const;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// True when ip is in ::ffff:0:0/96.
bool is_v4_mapped(const std::array<uint8_t, 16>& ip);
// ::ffff:a.b.c.d for a.b.c.d.
std::array<uint8_t, 16> map_v4(const std::array<uint8_t, 4>& ip);
// An IPv6 endpoint whose address is IPv4-mapped becomes the IPv4 endpoint; others unchanged.
Endpoint unmap(const Endpoint& ep);
// An IPv4 endpoint becomes its ::ffff:a.b.c.d IPv6 form; IPv6 endpoints unchanged.
Endpoint map_to_v6(const Endpoint& ep);

// Writes the 40-byte binding request Tailscale sends (header, SOFTWARE "tailnode",
// FINGERPRINT) for tx_id. The fingerprint CRC-32 is our own table-driven implementation.
void encode_binding_request(std::span<uint8_t, kRequestLen> out, const TxId& tx_id);

// derper's filter (PROTOCOL.md §9.1): returns the transaction ID of a Tailscale binding
// request, or a kProtocol error saying why the packet is not one (a server counts it as
// not_stun and stays silent).
Result<TxId> parse_binding_request(std::span<const uint8_t> packet);

// Writes a success response carrying only XOR-MAPPED-ADDRESS, as derper does: family 01 and
// 32 bytes when mapped.is_v4, else family 02 and 44 bytes with ip16 exactly as given. The
// caller chooses the family for IPv4-mapped sources: pass the endpoint as a dual-stack socket
// reported it to answer like derper (family 02, ::ffff:a.b.c.d), or unmap() it first to answer
// like the XDP responder (family 01). Returns the length written, or 0 when out is too small.
size_t encode_binding_response(std::span<uint8_t> out, const TxId& tx_id, const Endpoint& mapped);

struct BindingResponse {
  TxId tx_id{};
  Endpoint mapped;  // IPv4-mapped results are already unmapped to IPv4
};

// Go's stun.ParseResponse: a STUN success response (type 0101), attributes within the header
// length (trailing bytes ignored), address from XOR-MAPPED-ADDRESS (0x0020 or 0x8020) or else
// MAPPED-ADDRESS (0x0001). kProtocol error when none is usable or the packet is malformed.
// Matching tx_id to an in-flight probe is the caller's job.
Result<BindingResponse> parse_binding_response(std::span<const uint8_t> packet);

// True when the packet looks like STUN at all: ≥ 20 bytes, top two bits zero, magic cookie.
bool is_stun(std::span<const uint8_t> packet);

}  // namespace derp::stun
