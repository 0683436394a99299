// Executes a STUN probe plan over UDP (Asio): binding requests as Tailscale sends them, replies
// matched by transaction ID, per-(region, family) sets that stop at their first reply.
// PROTOCOL.md §9.1–9.3.
#pragma once

#include <chrono>
#include <functional>
#include <vector>

#include "derp/derp_map.h"
#include "derp/netcheck.h"
#include "derp/stun.h"

namespace derp::probe {

struct StunReply {
  int region_id = 0;
  size_t node_index = 0;
  IpFamily family = IpFamily::kV4;
  double latency_ms = 0;
  stun::Endpoint mapped;  // our address as the server saw it (unmapped to IPv4 when mapped)
};

struct StunRunOptions {
  std::chrono::milliseconds timeout{3000};
  // Netcheck's early end: once 3 regions answered, wait the slowest of their latencies (×2
  // when `full`) and stop. Off: wait for every set or the timeout.
  bool stop_early = true;
  bool full = true;
  std::function<void(const StunReply&)> on_reply;  // called as replies arrive
};

struct StunRunResult {
  std::vector<StunReply> replies;  // in arrival order
  bool v4_socket = false;          // could open an IPv4 UDP socket
  bool v6_socket = false;
  bool v4_sent = false;            // a send over that family succeeded
  bool v6_sent = false;
  std::vector<std::string> errors;  // targets that could not be resolved or sent to
};

StunRunResult run_stun_plan(const DERPMap& map, const std::vector<StunProbe>& plan,
                            const StunRunOptions& options);

// True when this host can bind a UDP socket on [::1]:0 (Go's OSHasIPv6).
bool os_has_ipv6();

}  // namespace derp::probe
