// Resolved addresses kept for a TTL so reconnects skip DNS (Go's dnscache in derphttp's dialer).
// Touched only from the owning client's event-loop thread: no locking.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace derp::net {

// Which addresses a lookup wants: any family, IPv4 only or IPv6 only.
enum class FamilyFilter { kAny, kV4, kV6 };

class DnsCache {
 public:
  explicit DnsCache(std::chrono::milliseconds ttl) : ttl_(ttl) {}

  // The addresses stored for (host, filter) less than ttl ago; nullopt when absent or stale.
  std::optional<std::vector<boost::asio::ip::address>> get(const std::string& host,
                                                          FamilyFilter filter) const;
  // Remembers a successful lookup. A zero TTL disables the cache.
  void put(const std::string& host, FamilyFilter filter,
           std::vector<boost::asio::ip::address> addrs);

 private:
  struct Entry {
    std::vector<boost::asio::ip::address> addrs;
    std::chrono::steady_clock::time_point stored;
  };
  std::chrono::milliseconds ttl_;
  std::map<std::pair<std::string, FamilyFilter>, Entry> entries_;
};

}  // namespace derp::net
