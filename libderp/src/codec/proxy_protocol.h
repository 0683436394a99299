// The PROXY protocol header a load balancer (HAProxy's send-proxy / send-proxy-v2, AWS NLB,
// nginx's proxy_protocol) puts before a TCP connection's first byte, naming the client's real
// address: version 1 (one text line) and version 2 (binary), as HAProxy's proxy-protocol.txt
// specifies them. I/O-free: bytes in, the header out; the listener decides whom to trust.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "derp/result.h"

namespace derp {

// The longest version-1 line (with its CRLF) and the fixed part of a version-2 header.
inline constexpr size_t kProxyV1MaxLen = 107;
inline constexpr size_t kProxyV2HeaderLen = 16;

struct ProxyAddress {
  std::array<uint8_t, 16> ip16{};  // IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d)
  bool is_v4 = false;
  uint16_t port = 0;
  std::string to_string() const;  // "1.2.3.4:5" or "[2001:db8::1]:5"
};

struct ProxyHeader {
  int version = 0;    // 1 or 2
  size_t length = 0;  // bytes of the header (the connection's data starts after them)
  // True when the header carries no client address (v1 UNKNOWN, v2 LOCAL, or a v2 family that
  // is not TCP over IPv4/IPv6): the connection's own addresses stand.
  bool local = false;
  ProxyAddress source;  // the client, as the proxy saw it
  ProxyAddress destination;
};

// True when `prefix` could still be the start of a PROXY header (either version): a listener
// that requires one can refuse a connection on its first bytes.
bool could_be_proxy_header(std::span<const uint8_t> prefix);

// Parses the header at the start of `in`: nullopt when more bytes are needed; a kProtocol error
// when the bytes are not a PROXY header or break the specification (bad signature, version,
// command, address or port, a v1 line over 107 bytes, a v2 length too short for its family).
Result<std::optional<ProxyHeader>> parse_proxy_header(std::span<const uint8_t> in);

// Encoders, for tests and for a relay that forwards the header (version 1: "PROXY TCP4 ..."
// or "PROXY TCP6 ..."; version 2: the PROXY command, TCP, no TLVs). `source` and
// `destination` must be of one family.
std::string encode_proxy_v1(const ProxyAddress& source, const ProxyAddress& destination);
std::string encode_proxy_v2(const ProxyAddress& source, const ProxyAddress& destination);

}  // namespace derp
