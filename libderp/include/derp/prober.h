// A DERP prober in the spirit of Tailscale's cmd/derpprobe: for every node of a DERP map, TLS
// certificate expiry, STUN over IPv4/IPv6, DERP connect + ping, packet delivery between two
// clients of each node pair in a region, and optionally a bandwidth transfer per node pair (as
// derpprobe's --bw-interval); Prometheus text for /metrics. Blocking; Asio behind a pimpl.
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

struct CheckResult;

struct ProberOptions {
  std::chrono::milliseconds timeout{5000};  // per check
  int cert_warn_days = 14;                  // a certificate expiring sooner fails "tls"
  std::string ca_file;                      // extra roots for TLS
  bool stun = true;
  bool tls = true;
  bool derp = true;
  bool mesh = true;  // send/recv between two clients per node pair of a region
  // Bandwidth probe (derpprobe's --bw-probe-size-bytes): for every ordered node pair of a region
  // (a node with itself included), this many bytes in packets of up to 64 KiB from a client on
  // one node to a client on the other, at most kBandwidthWindow packets in flight; the transfer
  // (first packet sent to last received, in order and intact) must end within `timeout`.
  // 0 = off.
  int64_t bw_size = 0;
  // Called as each check ends, one call at a time (from the checking threads): how many of the
  // round's `total` checks are done and the one that just ended (live TTY output).
  std::function<void(size_t done, size_t total, const CheckResult& last)> progress;
};

// Packets a bandwidth probe keeps in flight: below the relay's per-client queue depth (32, as
// derper) so a healthy relay never drops one, as Go's prober does.
inline constexpr int kBandwidthWindow = 30;

struct CheckResult {
  std::string check;  // "tls", "stun4", "stun6", "derp", "sendrecv", "bw"
  int region_id = 0;
  std::string node;    // "1a" or "1a->1b" for pair checks
  bool ok = false;
  double latency_ms = 0;
  std::string detail;  // failure reason, or facts ("expires in 80d")
  std::optional<double> cert_expiry_seconds;  // tls: seconds until notAfter (< 0 = expired)
  // bw: the payload size and, when it arrived whole, the transfer time (latency_ms is the same
  // in milliseconds).
  std::optional<int64_t> bw_bytes;
  std::optional<double> bw_seconds;

  // bw: bytes × 8 / seconds / 1e6; nullopt unless the transfer completed.
  std::optional<double> bw_mbps() const;

  std::string name() const;  // "derp/900/900a", "sendrecv/900/900a->900b"
};

// Runs every enabled check for every node once (nodes in parallel) and returns the results in
// map order.
std::vector<CheckResult> run_prober_checks(const DERPMap& map, const ProberOptions& options);

// Prometheus text exposition of results: derp_probe_check_success, _latency_seconds,
// derp_probe_cert_expiry_seconds, derp_probe_runs_total; for bw checks also
// derp_probe_bw_size_bytes, derp_probe_bw_transfer_seconds and derp_probe_bw_mbps.
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
