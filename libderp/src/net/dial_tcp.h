// Resolve a host name and open a TCP connection to it. Client side only.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <string>

#include "derp/result.h"
#include "net/dial_deadline.h"

namespace derp::net {

// Resolves `host` (kDns on failure) and connects to its addresses in order until one accepts
// (kConnect with the last error). `where` names the target in messages ("127.0.0.1:3340").
// Expiry of `deadline` yields kTimeout.
boost::asio::awaitable<Result<boost::asio::ip::tcp::socket>> dial_tcp(const std::string& host,
                                                                      uint16_t port,
                                                                      const std::string& where,
                                                                      DialDeadline& deadline);

// "Connection refused" → "connection refused": messages read as one sentence.
std::string lower_first(std::string s);

// "10s", "250ms", "1.5s": for messages.
std::string format_duration(std::chrono::milliseconds d);

}  // namespace derp::net
