#include "net/ip_prefix.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <charconv>

namespace derp::net {

namespace {

constexpr std::array<uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool is_mapped_v4(const std::array<uint8_t, 16>& a) {
  return std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), a.begin());
}

// Keeps the first `bits` bits of a.
std::array<uint8_t, 16> masked(std::array<uint8_t, 16> a, int bits) {
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(bits - i * 8, 0, 8);
    a[i] &= static_cast<uint8_t>(0xff00 >> keep);
  }
  return a;
}

}  // namespace

Result<PrefixList> PrefixList::parse(std::span<const std::string> entries) {
  PrefixList out;
  for (const std::string& entry : entries) {
    const auto bad = [&](std::string_view why) {
      return Error(ErrorKind::kUsage, fmt::format("{:?}: {}", entry, why));
    };
    const auto slash = entry.find('/');
    const std::string host = entry.substr(0, slash);
    boost::system::error_code ec;
    const auto addr = boost::asio::ip::make_address(host, ec);
    if (ec) return bad("not an IP address or prefix (want e.g. 10.0.0.0/8 or fd7a::/48)");
    Prefix p;
    int max_bits = 128;
    if (addr.is_v4()) {
      std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), p.addr.begin());
      const auto b = addr.to_v4().to_bytes();
      std::copy(b.begin(), b.end(), p.addr.begin() + 12);
      max_bits = 32;
    } else {
      p.addr = addr.to_v6().to_bytes();
    }
    int len = max_bits;
    if (slash != std::string::npos) {
      const std::string_view digits = std::string_view(entry).substr(slash + 1);
      const auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), len);
      if (digits.empty() || err != std::errc() || end != digits.data() + digits.size() || len < 0 ||
          len > max_bits) {
        return bad(fmt::format("prefix length must be 0 to {}", max_bits));
      }
    }
    p.bits = len + (addr.is_v4() ? 96 : 0);
    p.addr = masked(p.addr, p.bits);
    out.prefixes_.push_back(p);
  }
  return out;
}

bool PrefixList::contains(const std::array<uint8_t, 16>& ip16) const {
  for (const Prefix& p : prefixes_) {
    if (masked(ip16, p.bits) == p.addr) return true;
  }
  return false;
}

std::string PrefixList::to_string() const {
  if (prefixes_.empty()) return "none";
  std::string out;
  for (const Prefix& p : prefixes_) {
    if (!out.empty()) out += ',';
    if (is_mapped_v4(p.addr) && p.bits >= 96) {
      std::array<uint8_t, 4> v4;
      std::copy(p.addr.begin() + 12, p.addr.end(), v4.begin());
      out += fmt::format("{}/{}", boost::asio::ip::address_v4(v4).to_string(), p.bits - 96);
    } else {
      out += fmt::format("{}/{}", boost::asio::ip::address_v6(p.addr).to_string(), p.bits);
    }
  }
  return out;
}

}  // namespace derp::net
