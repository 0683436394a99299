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

// Prometheus text under the names derper's /debug/varz (tsweb varz) gives the same expvars:
// per family "# TYPE <name> counter|gauge" then its samples, families sorted by name. Keys of
// derper's "derp" set become derp_<key> ("gauge_" keys gauges, "counter_" keys counters,
// prefix stripped; other keys counters); per-label keys become one labelled family each, e.g.
// packets_dropped_reason_queue_head -> derp_packets_dropped_reason{reason="queue_head"},
// packets_dropped_type_disco -> derp_packets_dropped_type{type="disco"}. Keys of derper's other
// expvars keep their own names: derp_websocket_accepts, stun_requests{disposition="success"},
// stun_addrfamily{family="ipv4"}, tls_listener_accepted_connections and
// tls_listener_rejected_connections.
std::string render_prometheus(const CounterMap& counters);

// expvar JSON as derper's /debug/vars lays it out: {"derp": {key: value, ...,
// "counter_packets_dropped_reason": {"queue_head": n, ...}, ...}, "stun": {"counter_requests":
// {"success": n, ...}, "counter_addrfamily": {"ipv4": n, "ipv6": n}}, "tls_listener":
// {"counter_accepted_connections": n, "counter_rejected_connections": n},
// "derp_websocket_accepts": n}, newline-terminated.
std::string render_expvar_json(const CounterMap& counters);

}  // namespace derp::server
