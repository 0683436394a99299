// Dialing TCP with concurrent attempts (PROTOCOL.md §7.5): a region node is dialed over IPv4 and
// IPv6 at once, optionally with IPv4 started late ("prefer IPv6"); the first connected socket
// wins and the others are cancelled. A URL client is the one-attempt case.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "derp/result.h"
#include "net/dial_deadline.h"
#include "net/dns_cache.h"

namespace derp::net {

struct DialAttempt {
  std::string host;  // an IP literal (dialed as is) or a name (resolved, then tried in order)
  FamilyFilter family = FamilyFilter::kAny;
  std::chrono::milliseconds delay{0};  // start this late, or as soon as every other attempt failed
};

struct DialResult {
  explicit DialResult(boost::asio::ip::tcp::socket s) : socket(std::move(s)) {}
  boost::asio::ip::tcp::socket socket;
  std::chrono::nanoseconds dns{0};  // resolving (0 for IP literals and cache hits)
  std::chrono::nanoseconds tcp{0};  // the TCP connects, after DNS
  bool dns_cached = false;
  std::string remote;  // "127.0.0.1:3340"
};

// Runs every attempt concurrently; the first connected socket wins. When all fail, the error of
// the first attempt in list order (kDns / kConnect). `budget` > 0 bounds this race alone (kTimeout
// "… (node dial)"); the deadline bounds the whole connect (kTimeout). `cache` may be null.
boost::asio::awaitable<Result<DialResult>> dial_race(std::vector<DialAttempt> attempts,
                                                     uint16_t port, std::string where,
                                                     DialDeadline& deadline,
                                                     std::chrono::milliseconds budget,
                                                     DnsCache* cache);

}  // namespace derp::net
