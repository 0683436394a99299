// A DERP prober in the spirit of Tailscale's cmd/derpprobe: for every node of a DERP map, TLS
// certificate expiry, STUN over IPv4/IPv6, DERP connect + ping, and packet delivery between
// two clients of each node pair in a region; Prometheus text for /metrics. Blocking; Asio behind a pimpl.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "derp/derp_map.h"
#include "derp/result.h"

namespace derp::probe {

struct ProberOptions {
  std::chrono::milliseconds timeout{5000};  // per check
  int cert_warn_days = 14;                  // a certificate expiring sooner fails "tls"
  std::string ca_file;                      // extra roots for TLS
  bool stun = true;
  bool tls = true;
  bool derp = true;
  bool mesh = true;  // send/recv between two clients per node pair of a region
};

struct CheckResult {
  std::string check;   // "tls", "stun4", "stun6", "derp", "sendrecv"
  int region_id = 0;
  std::string node;    // "1a" or "1a->1b" for pair checks
  bool ok = false;
  double latency_ms = 0;
  std::string detail;  // failure reason, or facts ("expires in 80d")
  std::optional<double> cert_expiry_seconds;  // tls: seconds until notAfter (< 0 = expired)

  std::string name() const;  // "derp/900/900a", "sendrecv/900/900a->900b"
};

// Runs every enabled check for every node once (nodes in parallel) and returns the results in
// map order.
std::vector<CheckResult> run_prober_checks(const DERPMap& map, const ProberOptions& options);

// Prometheus text exposition of results: derp_probe_check_success, _latency_seconds,
// derp_probe_cert_expiry_seconds, derp_probe_runs_total.
std::string prober_metrics_text(const std::vector<CheckResult>& results, uint64_t runs);

// A plain-HTTP listener answering GET /metrics with render() (Beast, one thread).
class MetricsHttpServer {
 public:
  // listen_addr "127.0.0.1:9090" (port 0 = ephemeral). kUsage for a bad address, kConnect when
  // the bind fails.
  static Result<std::unique_ptr<MetricsHttpServer>> start(const std::string& listen_addr,
                                                          std::function<std::string()> render);
  ~MetricsHttpServer();
  std::string local_address() const;  // "127.0.0.1:40123"
  void stop();

 private:
  struct Impl;
  explicit MetricsHttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace derp::probe
