// Netcheck: which DERP regions this host reaches, how fast, over which families, and which one
// it would pick as home; plus the captive-portal check. PROTOCOL.md §9 (probe plan, report,
// home region) and §10 (captive portal). Blocking calls; Asio and libcurl stay in src/probe/.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "derp/derp_map.h"
#include "derp/result.h"

namespace derp::probe {

// ---- The probe plan (§9.3). Pure functions, unit-tested without sockets.

struct StunProbe {
  int region_id = 0;
  size_t node_index = 0;  // into the region's Nodes
  IpFamily family = IpFamily::kV4;
  std::chrono::milliseconds delay{0};  // after the start of the STUN phase

  friend bool operator==(const StunProbe&, const StunProbe&) = default;
};

struct PlanInput {
  bool full = true;  // a full report; false = incremental, driven by last_latency_ms
  bool have_v4 = true;
  bool have_v6 = false;
  int current_home = 0;                   // previous PreferredDERP (0 = none)
  std::map<int, double> last_latency_ms;  // previous report's RegionLatency
};

// Every STUN probe to send, sorted by delay. Full: every measurable region, tries at 0, 100,
// 200 ms to Nodes[i % n], per family. Incremental: the fastest 3 plus the home, with Go's try
// counts and delays. Regions with NoMeasureNoHome, and nodes without a STUN target for the
// family, never appear.
std::vector<StunProbe> make_probe_plan(const DERPMap& map, const PlanInput& in);

// ---- Choosing the home region (§9.6).

struct HomeChoice {
  int preferred = 0;        // 0 = no region qualified
  int candidate = 0;        // lowest scaled best-recent latency in this report
  double candidate_ms = 0;  // its scaled best-recent latency
  int old_home = 0;
  double old_home_ms = -1;  // old home's scaled latency in this report; < 0 = not measured
  bool kept_old_home = false;  // hysteresis kept the old home over a faster candidate
  std::map<int, double> scaled_ms;  // region → best-recent latency × RegionScore
  std::string reason;               // one sentence: why `preferred` won
};

// `current`: this report's RegionLatency (ms). `recent`: earlier reports' RegionLatency from
// the last 5 min 5 s. `old_home`: the previous PreferredDERP. Keeps the old home when it still
// answered and the candidate is not ≥ 10 ms and ≥ 1/3 faster.
HomeChoice choose_home(const DERPMap& map, const std::map<int, double>& current,
                       const std::vector<std::map<int, double>>& recent, int old_home);

// ---- The report (§9.5).

struct RegionReport {
  std::optional<double> latency_ms;  // what RegionLatency holds (min over families/methods)
  std::optional<double> v4_ms;       // STUN over IPv4
  std::optional<double> v6_ms;       // STUN over IPv6
  std::optional<double> https_ms;    // GET /derp/latency-check, when UDP got no answer
  std::string https_error;           // why the HTTPS fallback failed, if it ran and failed
  std::string node;                  // the node that answered first
};

struct Report {
  std::chrono::system_clock::time_point now;
  bool udp = false;
  bool ipv4 = false;
  bool ipv6 = false;
  bool ipv4_can_send = false;
  bool ipv6_can_send = false;
  bool os_has_ipv6 = false;
  std::optional<bool> mapping_varies_by_dest_ip;
  int preferred_derp = 0;
  std::map<int, RegionReport> regions;  // every measured (or attempted) region
  std::string global_v4;                // first IPv4 mapping seen, "a.b.c.d:port"
  std::string global_v6;                // last IPv6 mapping seen
  std::map<std::string, int> global_v4_counters;
  std::map<std::string, int> global_v6_counters;
  std::optional<bool> captive_portal;
  HomeChoice home;  // how preferred_derp was chosen

  // RegionLatency as Go reports it (ms): regions with latency_ms.
  std::map<int, double> region_latency() const;
};

// One line of progress while a report runs (live TTY output).
struct ProgressEvent {
  int region_id = 0;
  std::string what;  // "stun v4 12.3ms from 1a", "https 20.1ms", "no answer"
};

struct NetcheckOptions {
  bool full = true;
  bool ipv4 = true;
  bool ipv6 = true;  // used only when the host can bind an IPv6 UDP socket
  std::chrono::milliseconds stun_timeout{3000};
  std::chrono::milliseconds timeout{5000};  // whole report
  bool https_fallback = true;               // /derp/latency-check for regions UDP missed
  bool captive_check = true;                // run when no UDP reply arrived (§10)
  uint16_t captive_port = 80;               // port of http://<IPv4>/generate_204
  std::string ca_file;                      // extra roots for the HTTPS fallback
  // The previous report (hysteresis, incremental plan); its Now decides whether its
  // latencies still count as recent.
  const Report* previous = nullptr;
  std::function<void(const ProgressEvent&)> progress;  // called from the probing thread
};

// Runs one report over `map`. Errors only when nothing could be attempted (kUsage: no
// measurable region; kIo: no UDP socket and no fallback). Unreachable regions are data.
Result<Report> run_netcheck(const DERPMap& map, const NetcheckOptions& options);

// ---- Captive portal (§10).

enum class CaptiveVerdict {
  kNoPortal,     // 204 and the exact X-Tailscale-Response
  kRedirect,     // 3xx: a captive portal's login page
  kBody,         // 200 (or another 2xx) with content: a portal or a rewriting proxy
  kMissingHeader,  // 204 without X-Tailscale-Response: a middlebox answering for the relay
  kWrongHeader,    // 204 with the wrong response: a middlebox
  kBadStatus,      // any other status
  kNoResult,       // transport error (DNS, connect, timeout): says nothing about a portal
};
const char* captive_verdict_name(CaptiveVerdict v);  // "no_portal", "redirect", ...

struct CaptiveResult {
  std::string url;
  CaptiveVerdict verdict = CaptiveVerdict::kNoResult;
  long status = 0;
  std::string detail;  // "302 to http://portal.invalid/login", "missing X-Tailscale-Response"
  Error error;         // for kNoResult
  double latency_ms = 0;
};

// GET url (http://host[:port]/generate_204) with a random X-Tailscale-Challenge, no
// redirects, no keep-alive; the verdict per §10.
CaptiveResult check_captive_endpoint(const std::string& url, std::chrono::milliseconds timeout);

// The endpoints netcheck would check for `map`: http://<IPv4>:<port>/generate_204 for nodes
// with IPv4 and CanPort80 in measurable regions, the home region's first, at most `max`.
std::vector<std::string> captive_endpoints(const DERPMap& map, int home, uint16_t port,
                                           size_t max = 5);

// Checks every url concurrently.
std::vector<CaptiveResult> check_captive(const std::vector<std::string>& urls,
                                         std::chrono::milliseconds timeout);

}  // namespace derp::probe
