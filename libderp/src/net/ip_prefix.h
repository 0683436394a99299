// A list of IP prefixes ("127.0.0.0/8", "::1", "10.1.0.0/16"): who may reach the relay's
// /debug/ endpoints (ServerOptions::debug_allow_from). Pure: parsing and matching, no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "derp/result.h"

namespace derp::net {

class PrefixList {
 public:
  // Each entry is an IPv4 or IPv6 address with an optional "/LEN" (a bare address is one host).
  // kUsage naming the entry on anything else ("10.0.0.0/33", "localhost", "1.2.3.4/").
  static Result<PrefixList> parse(std::span<const std::string> entries);

  // True when the address (16 bytes; IPv4 as ::ffff:a.b.c.d) is in one of the prefixes. An
  // IPv4-mapped address matches IPv4 prefixes.
  bool contains(const std::array<uint8_t, 16>& ip16) const;

  bool empty() const { return prefixes_.empty(); }
  // "127.0.0.0/8,::1/128" (canonical), "none" when empty.
  std::string to_string() const;

 private:
  struct Prefix {
    std::array<uint8_t, 16> addr{};  // network address, host bits zero
    int bits = 0;                    // of the 16-byte form (an IPv4 /8 is 96 + 8)
  };
  std::vector<Prefix> prefixes_;
};

}  // namespace derp::net
