#include "net/dns_cache.h"

namespace derp::net {

std::optional<std::vector<boost::asio::ip::address>> DnsCache::get(const std::string& host,
                                                                  FamilyFilter filter) const {
  auto it = entries_.find({host, filter});
  if (it == entries_.end()) return std::nullopt;
  if (std::chrono::steady_clock::now() - it->second.stored >= ttl_) return std::nullopt;
  return it->second.addrs;
}

void DnsCache::put(const std::string& host, FamilyFilter filter,
                   std::vector<boost::asio::ip::address> addrs) {
  if (ttl_.count() <= 0 || addrs.empty()) return;
  entries_[{host, filter}] = Entry{std::move(addrs), std::chrono::steady_clock::now()};
}

}  // namespace derp::net
