// The client half of DERP's HTTP/1.1 upgrade (PROTOCOL.md §6.1–6.2), over any ClientStream.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "derp/result.h"
#include "net/client_stream.h"
#include "net/dial_deadline.h"
#include "net/url.h"

namespace derp::net {

struct UpgradeResponse {
  // Bytes that arrived after the response head: the start of the DERP stream (the ServerKey
  // frame usually comes in the same read as the 101).
  std::vector<uint8_t> leftover;
  std::string derp_public_key;  // the informational Derp-Public-Key header, "" if absent
};

// The request head: GET <target> HTTP/1.1, Host, User-Agent, Connection: Upgrade, Upgrade: DERP
// (Go's order), plus Derp-Fast-Start: 1 when `fast_start` (§6.2: the relay then sends no HTTP
// response) and Ideal-Node when `ideal_node` is not empty (region dialing landed on a node other
// than the first, §6.1). Serialized by Beast.
std::string build_upgrade_request(const DerpUrl& url, std::string_view user_agent,
                                  bool fast_start = false, std::string_view ideal_node = {});

// Writes the request and reads the response head with Beast's parser. A status other than 101
// is kHttp "HTTP <code> from <host:port>: <first line of body>" (the code also in *status when
// given); malformed HTTP is kHttp; a deadline expiry is kTimeout.
boost::asio::awaitable<Result<UpgradeResponse>> http_upgrade(ClientStream& stream,
                                                             const DerpUrl& url,
                                                             std::string_view user_agent,
                                                             DialDeadline& deadline,
                                                             std::string_view ideal_node = {},
                                                             unsigned* status = nullptr);

}  // namespace derp::net
