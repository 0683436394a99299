// derp-bench's load engine: pairs of in-process clients (sender → relay → receiver) on a few
// Asio event loops, closed loop (a window of packets in flight per pair) or open loop (a rate
// per pair, or as fast as the sockets take). Plus the --raw ceiling (the same frames through a
// plain in-process TCP forwarder), --idle connections and --connect-storm.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "bench/conn.h"
#include "bench/histogram.h"
#include "derp/result.h"

namespace derp::bench {

struct LoadConfig {
  int pairs = 1;
  size_t size = 1200;  // payload bytes per packet (≥ 16: sequence number and timestamp)
  std::chrono::nanoseconds duration = std::chrono::seconds(5);
  std::chrono::nanoseconds warmup = std::chrono::milliseconds(500);
  int window = 32;     // closed loop: packets in flight per pair (when rate == 0 && !flood)
  double rate = 0;     // open loop: packets/s per pair
  bool flood = false;  // open loop: as fast as the sender's socket accepts
  int threads = 1;     // generator event loops
  std::chrono::nanoseconds ping_interval{0};  // > 0: one more client pings during the run
  std::chrono::nanoseconds stall = std::chrono::milliseconds(500);  // closed loop loss timeout
  // One frame per write call, as Tailscale's Go client writes (it flushes every packet); the
  // default batches every frame that is due into one write.
  bool per_frame = false;
  std::optional<pid_t> server_pid;  // the relay's CPU over the measured window (/proc/PID/stat)
};

struct LoadReport {
  double seconds = 0;       // measured window
  uint64_t sent = 0;        // packets written in the window
  uint64_t delivered = 0;   // packets received in the window
  uint64_t total_sent = 0;  // whole run, warm-up included
  uint64_t total_delivered = 0;
  uint64_t lost = 0;        // total_sent - total_delivered after the drain
  uint64_t stalls = 0;      // closed loop: windows declared lost after `stall`
  uint64_t foreign = 0;     // packets from an unexpected source or too short to be ours
  double min_pair_pps = 0;  // fairness: delivered packets/s of the slowest and fastest pair
  double max_pair_pps = 0;
  Histogram latency;  // one-way, ns (sender's encode → receiver's parse)
  Histogram ping;     // Ping → Pong RTT, ns
  uint64_t pings_sent = 0;
  uint64_t writes = 0;      // senders' write calls in the window (frames per write = sent/writes)
  std::optional<double> server_cpu_seconds;  // user+sys of server_pid over the window
  double self_cpu_seconds = 0;               // derp-bench's own user+sys over the window
  std::string server_key;  // "nodekey:…" (empty for --raw)
};

// target == nullptr: --raw (the in-process forwarder instead of a relay).
Result<LoadReport> run_load(const Target* target, const LoadConfig& config);

struct IdleReport {
  int connections = 0;
  double open_seconds = 0;
  std::optional<int64_t> server_rss_before_kb, server_rss_after_kb;
  int64_t self_rss_before_kb = 0, self_rss_after_kb = 0;
};
// Opens and handshakes n connections, holds them for `hold`, reads the relay's VmRSS from
// /proc/<server_pid>/status before and after when a pid is given. Raises RLIMIT_NOFILE.
Result<IdleReport> run_idle(const Target& target, int n, int threads, std::chrono::nanoseconds hold,
                            std::optional<pid_t> server_pid);

struct StormReport {
  int connections = 0;
  int failed = 0;
  std::string first_error;
  double seconds = 0;
  Histogram handshake;  // connect → ServerInfo, ns
};
// n connections, `concurrency` at a time: connect, upgrade, handshake, close.
Result<StormReport> run_connect_storm(const Target& target, int n, int concurrency, int threads);

// VmRSS of a process in kB (kUsage when /proc/<pid>/status cannot be read).
Result<int64_t> read_rss_kb(pid_t pid);

// User + system CPU seconds a process has used (utime + stime of /proc/<pid>/stat).
Result<double> read_cpu_seconds(pid_t pid);

}  // namespace derp::bench
