// The relay's counters rendered for scrapers (PROTOCOL.md §6.6): derper's /debug/vars (expvar
// JSON) and /debug/varz and /metrics (Prometheus text exposition 0.0.4). Pure functions of the
// counter map that Server::counters() returns, so unit tests drive them directly.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace derp::server {

class Stats;
class Relay;

using CounterMap = std::map<std::string, int64_t>;

// Every counter and gauge under its expvar name (what Server::counters() returns).
CounterMap snapshot_counters(const Stats& stats, const Relay& relay);

// Prometheus text: per family "# TYPE derp_<name> counter|gauge" then its samples, families
// sorted by name. "gauge_" keys become gauges and "counter_" keys counters, prefix stripped;
// other keys are counters. Per-label keys become one labelled family each, e.g.
// packets_dropped_reason_queue_head -> derp_packets_dropped_reason{reason="queue_head"},
// stun_requests_success -> derp_stun_requests{disposition="success"}.
std::string render_prometheus(const CounterMap& counters);

// expvar JSON: {"derp": {every non-STUN key: value}, "stun": {"counter_requests":
// {"success": n, ...}, "counter_addrfamily": {"ipv4": n, "ipv6": n}}}, newline-terminated.
std::string render_expvar_json(const CounterMap& counters);

}  // namespace derp::server
