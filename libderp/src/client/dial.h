// Everything below the DERP handshake for one connect: choose the node (region dialing), open
// TCP (race IPv4/IPv6, DNS cache, custom dialer), TLS, and the HTTP upgrade. PROTOCOL.md §6.1–6.3,
// §7.5, §7.7. client.cc then runs the DERP handshake over the returned stream.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "derp/client.h"
#include "net/client_stream.h"
#include "net/dial_deadline.h"
#include "net/dns_cache.h"
#include "net/http_proxy.h"
#include "net/tls_client.h"
#include "net/url.h"

namespace derp::client {

// One place the client can connect to: the URL of a URL client, or one region node.
struct ServerTarget {
  net::DerpUrl url;
  std::shared_ptr<net::TlsClientContext> tls;  // null for http://
  std::optional<DERPNode> node;                // region dialing only
  std::string ideal_node;                      // Ideal-Node value when this is not node 0
  std::optional<net::ProxyConfig> proxy;       // CONNECT through this proxy
};

// The targets for `options` (kUsage when the region has no dialable node, or a URL or TLS
// setting is bad). TLS contexts are built here, once per client.
Result<std::vector<ServerTarget>> make_dial_targets(const ClientOptions& options);

struct DialSettings {
  const std::vector<ServerTarget>* targets = nullptr;
  bool region = false;
  std::string region_label;  // "region 900 (test)" for messages
  bool prefer_ipv6 = false;
  std::function<Result<int>(const std::string&, uint16_t)> url_dialer;
  net::DnsCache* dns_cache = nullptr;
  std::string user_agent;
  bool websocket = false;  // WebSocket from the start (else only as the 426 fallback)
  std::chrono::milliseconds tcp_keepalive{0};  // on every dialed socket (0 = off)
  std::function<void(const std::string&)> log;  // a failed node, before the next is tried
};

struct DialedStream {
  std::unique_ptr<net::ClientStream> stream;
  std::vector<uint8_t> leftover;       // DERP bytes that came with the 101
  std::optional<NodePublic> meta_key;  // fast start: the upgrade request is still to be sent
  const ServerTarget* target = nullptr;
  ConnectReport report;  // the transport's phases, addresses and TLS facts
};

// Dials, handshakes TLS and upgrades (unless the TLS meta cert allows fast start). Errors name
// the layer: kDns, kConnect, kTls, kHttp, kTimeout.
boost::asio::awaitable<Result<DialedStream>> dial_stream(const DialSettings& settings,
                                                        net::DialDeadline& deadline);

// Go's DialRegionTLS: the targets' TCP as dial_stream does, then TLS on the first that
// accepted, and nothing more (no HTTP, no DERP). kUsage for an http:// target.
boost::asio::awaitable<Result<DialedStream>> dial_tls_only(const DialSettings& settings,
                                                          net::DialDeadline& deadline);

}  // namespace derp::client
