// PROXY protocol v1/v2 (HAProxy's proxy-protocol.txt, sections 2.1 and 2.2).
#include "codec/proxy_protocol.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string_view>

namespace derp {
namespace {

constexpr std::array<uint8_t, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                  0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::string_view kV1Prefix = "PROXY ";

Error bad(std::string why) { return Error(ErrorKind::kProtocol, "PROXY header: " + why); }

bool prefix_of(std::span<const uint8_t> in, std::span<const uint8_t> whole) {
  const size_t n = std::min(in.size(), whole.size());
  return std::memcmp(in.data(), whole.data(), n) == 0;
}

std::span<const uint8_t> proxy_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

void set_v4(ProxyAddress& a, const uint8_t* ip) {
  a.ip16 = {};
  a.ip16[10] = 0xff;
  a.ip16[11] = 0xff;
  std::memcpy(a.ip16.data() + 12, ip, 4);
  a.is_v4 = true;
}

// A v1 port: 1 to 5 decimal digits, at most 65535.
bool parse_port(std::string_view s, uint16_t* out) {
  if (s.empty() || s.size() > 5) return false;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint32_t>(c - '0');
  }
  if (v > 65535) return false;
  *out = static_cast<uint16_t>(v);
  return true;
}

bool parse_ip(std::string_view s, bool v4, ProxyAddress* out) {
  if (s.empty() || s.size() > 45) return false;
  char buf[46];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  if (v4) {
    uint8_t ip[4];
    if (::inet_pton(AF_INET, buf, ip) != 1) return false;
    set_v4(*out, ip);
    return true;
  }
  if (::inet_pton(AF_INET6, buf, out->ip16.data()) != 1) return false;
  out->is_v4 = false;
  return true;
}

Result<std::optional<ProxyHeader>> parse_v1(std::span<const uint8_t> in) {
  const std::string_view text(reinterpret_cast<const char*>(in.data()),
                              std::min(in.size(), kProxyV1MaxLen));
  const size_t crlf = text.find("\r\n");
  if (crlf == std::string_view::npos) {
    if (in.size() >= kProxyV1MaxLen) return bad("version 1 line longer than 107 bytes");
    // A bare LF, or any byte a header line cannot hold, need not wait for more.
    for (char c : text) {
      if (c == '\n' || c == '\0') return bad("version 1 line without CRLF");
    }
    return std::optional<ProxyHeader>();
  }
  std::string_view line = text.substr(kV1Prefix.size(), crlf - kV1Prefix.size());
  ProxyHeader h;
  h.version = 1;
  h.length = crlf + 2;
  // Fields separated by exactly one space.
  std::array<std::string_view, 5> f;
  size_t n = 0;
  const size_t sp = line.find(' ');
  const std::string_view proto = line.substr(0, sp);
  if (proto == "UNKNOWN") {
    h.local = true;  // whatever follows is ignored (the spec's rule)
    return std::optional<ProxyHeader>(h);
  }
  if (proto != "TCP4" && proto != "TCP6") {
    return bad(fmt::format("unknown version 1 protocol \"{}\"", proto));
  }
  if (sp == std::string_view::npos) return bad("version 1 line without addresses");
  std::string_view rest = line.substr(sp + 1);
  while (n < f.size()) {
    const size_t next = rest.find(' ');
    f[n++] = rest.substr(0, next);
    if (next == std::string_view::npos) {
      rest = {};
      break;
    }
    rest = rest.substr(next + 1);
  }
  if (n != 4 || !rest.empty())
    return bad("version 1 line needs 4 fields after " + std::string(proto));
  const bool v4 = proto == "TCP4";
  if (!parse_ip(f[0], v4, &h.source) || !parse_ip(f[1], v4, &h.destination)) {
    return bad(fmt::format("bad {} address in \"{} {}\"", v4 ? "IPv4" : "IPv6", f[0], f[1]));
  }
  if (!parse_port(f[2], &h.source.port) || !parse_port(f[3], &h.destination.port)) {
    return bad(fmt::format("bad port in \"{} {}\"", f[2], f[3]));
  }
  return std::optional<ProxyHeader>(h);
}

Result<std::optional<ProxyHeader>> parse_v2(std::span<const uint8_t> in) {
  if (in.size() < kProxyV2HeaderLen) return std::optional<ProxyHeader>();
  const uint8_t ver_cmd = in[12];
  const uint8_t fam = in[13];
  const size_t len = static_cast<size_t>(in[14]) << 8 | in[15];
  if ((ver_cmd >> 4) != 2)
    return bad(fmt::format("version 2 signature with version {}", ver_cmd >> 4));
  const uint8_t cmd = ver_cmd & 0x0f;
  if (cmd > 1) return bad(fmt::format("unknown version 2 command {}", cmd));
  if (in.size() < kProxyV2HeaderLen + len) return std::optional<ProxyHeader>();
  ProxyHeader h;
  h.version = 2;
  h.length = kProxyV2HeaderLen + len;
  const uint8_t* a = in.data() + kProxyV2HeaderLen;
  if (cmd == 0) {  // LOCAL: the proxy's own connection (health checks); addresses ignored
    h.local = true;
    return std::optional<ProxyHeader>(h);
  }
  switch (fam) {
    case 0x11:  // TCP over IPv4
      if (len < 12) return bad(fmt::format("version 2 TCP4 with {} address bytes (want 12)", len));
      set_v4(h.source, a);
      set_v4(h.destination, a + 4);
      h.source.port = static_cast<uint16_t>(a[8] << 8 | a[9]);
      h.destination.port = static_cast<uint16_t>(a[10] << 8 | a[11]);
      break;
    case 0x21:  // TCP over IPv6
      if (len < 36) return bad(fmt::format("version 2 TCP6 with {} address bytes (want 36)", len));
      std::memcpy(h.source.ip16.data(), a, 16);
      std::memcpy(h.destination.ip16.data(), a + 16, 16);
      h.source.port = static_cast<uint16_t>(a[32] << 8 | a[33]);
      h.destination.port = static_cast<uint16_t>(a[34] << 8 | a[35]);
      break;
    default:  // UNSPEC, UDP, UNIX: no TCP client address to take
      h.local = true;
      break;
  }
  return std::optional<ProxyHeader>(h);
}

}  // namespace

std::string ProxyAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  if (is_v4) {
    ::inet_ntop(AF_INET, ip16.data() + 12, buf, sizeof buf);
    return fmt::format("{}:{}", buf, port);
  }
  ::inet_ntop(AF_INET6, ip16.data(), buf, sizeof buf);
  return fmt::format("[{}]:{}", buf, port);
}

bool could_be_proxy_header(std::span<const uint8_t> prefix) {
  return prefix_of(prefix, kV2Signature) || prefix_of(prefix, proxy_bytes(kV1Prefix));
}

Result<std::optional<ProxyHeader>> parse_proxy_header(std::span<const uint8_t> in) {
  if (in.empty()) return std::optional<ProxyHeader>();
  if (in[0] == kV2Signature[0]) {
    if (!prefix_of(in, kV2Signature)) return bad("not a PROXY protocol signature");
    return parse_v2(in);
  }
  if (!prefix_of(in, proxy_bytes(kV1Prefix))) return bad("not a PROXY protocol header");
  if (in.size() < kV1Prefix.size()) return std::optional<ProxyHeader>();
  return parse_v1(in);
}

std::string encode_proxy_v1(const ProxyAddress& source, const ProxyAddress& destination) {
  auto ip = [](const ProxyAddress& a) {
    char buf[INET6_ADDRSTRLEN];
    if (a.is_v4) {
      ::inet_ntop(AF_INET, a.ip16.data() + 12, buf, sizeof buf);
    } else {
      ::inet_ntop(AF_INET6, a.ip16.data(), buf, sizeof buf);
    }
    return std::string(buf);
  };
  return fmt::format("PROXY {} {} {} {} {}\r\n", source.is_v4 ? "TCP4" : "TCP6", ip(source),
                     ip(destination), source.port, destination.port);
}

std::string encode_proxy_v2(const ProxyAddress& source, const ProxyAddress& destination) {
  std::string out(kV2Signature.begin(), kV2Signature.end());
  const bool v4 = source.is_v4;
  out.push_back(static_cast<char>(0x21));  // version 2, PROXY
  out.push_back(static_cast<char>(v4 ? 0x11 : 0x21));
  const size_t len = v4 ? 12 : 36;
  out.push_back(static_cast<char>(len >> 8));
  out.push_back(static_cast<char>(len & 0xff));
  const size_t ip_len = v4 ? 4 : 16;
  const size_t off = v4 ? 12 : 0;
  out.append(reinterpret_cast<const char*>(source.ip16.data() + off), ip_len);
  out.append(reinterpret_cast<const char*>(destination.ip16.data() + off), ip_len);
  for (uint16_t p : {source.port, destination.port}) {
    out.push_back(static_cast<char>(p >> 8));
    out.push_back(static_cast<char>(p & 0xff));
  }
  return out;
}

}  // namespace derp
