// The live status behind "/" and /status.json (docs/CLI.md, derp-serve): the figures, who sees
// which, and the history of delivery rates the page draws. No I/O here.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/metrics.h"

namespace derp::server {

// Delivery rates (packets/s, bytes/s) over the last `capacity` samples, computed from cumulative
// counters read about once a second. The ring is allocated once; sample() never allocates.
// Not thread-safe: the server guards it.
class RateHistory {
 public:
  struct Point {
    double packets_per_second = 0;
    double bytes_per_second = 0;
  };

  explicit RateHistory(size_t capacity = 300);

  // Takes the counters' totals at `now`. Every call after the first adds the rates since the
  // previous one (a counter that went down counts as 0); a call not later than the previous one
  // is ignored, so rates never divide by zero.
  void sample(std::chrono::steady_clock::time_point now, int64_t packets, int64_t bytes);
  // The points, oldest first (at most capacity()).
  std::vector<Point> points() const;
  size_t size() const { return size_; }
  size_t capacity() const { return ring_.size(); }

 private:
  std::vector<Point> ring_;
  size_t next_ = 0;  // slot of the next point
  size_t size_ = 0;
  bool primed_ = false;
  std::chrono::steady_clock::time_point last_at_{};
  int64_t last_packets_ = 0;
  int64_t last_bytes_ = 0;
};

struct MeshPeerStatus {
  std::string name;  // the --mesh-with entry
  std::string url;   // what the link dials
  bool up = false;   // connected and synced
};

// Everything /status.json reports, gathered by the server at request time.
struct StatusInfo {
  std::string version;
  std::string server_key;  // "nodekey:…": every client learns it from the ServerKey frame
  int64_t uptime_seconds = 0;
  CounterMap counters;  // as /metrics has them (snapshot_counters)
  bool stun = false;
  std::vector<MeshPeerStatus> mesh;
  std::optional<int64_t> tls_not_after;  // Unix seconds, when serving TLS
  int64_t now_unix = 0;
  std::vector<RateHistory::Point> history;  // oldest first, one point a second
  size_t history_capacity = 0;
};

// /status.json: aggregate figures only, never a client's key or address. Mesh peers' names,
// URLs and per-peer state only when `debug_allowed` (loopback); others get the count and each
// peer's up/down state. Newline-terminated.
std::string render_status_json(const StatusInfo& s, bool debug_allowed);

}  // namespace derp::server
