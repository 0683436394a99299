#include "server/status.h"

#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string_view>

namespace derp::server {

RateHistory::RateHistory(size_t capacity) : ring_(capacity == 0 ? 1 : capacity) {}

void RateHistory::sample(std::chrono::steady_clock::time_point now, int64_t packets,
                         int64_t bytes) {
  if (primed_ && now <= last_at_) return;
  if (primed_) {
    const double secs = std::chrono::duration<double>(now - last_at_).count();
    auto per_second = [secs](int64_t delta) {
      return delta > 0 ? static_cast<double>(delta) / secs : 0.0;
    };
    ring_[next_] = {per_second(packets - last_packets_), per_second(bytes - last_bytes_)};
    next_ = (next_ + 1) % ring_.size();
    if (size_ < ring_.size()) ++size_;
  }
  primed_ = true;
  last_at_ = now;
  last_packets_ = packets;
  last_bytes_ = bytes;
}

std::vector<RateHistory::Point> RateHistory::points() const {
  std::vector<Point> out;
  out.reserve(size_);
  const size_t first = (next_ + ring_.size() - size_) % ring_.size();
  for (size_t i = 0; i < size_; ++i) out.push_back(ring_[(first + i) % ring_.size()]);
  return out;
}

namespace {

int64_t counter(const CounterMap& c, const std::string& key) {
  auto it = c.find(key);
  return it == c.end() ? 0 : it->second;
}

// One decimal is all a human reads; it also keeps the JSON short.
double tenths(double v) { return std::round(v * 10) / 10; }

std::string utc_text(int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::string render_status_json(const StatusInfo& s, bool debug_allowed) {
  using nlohmann::json;
  const CounterMap& c = s.counters;
  json drops = json::object();
  constexpr std::string_view kDropPrefix = "packets_dropped_reason_";
  for (const auto& [key, value] : c) {
    if (key.starts_with(kDropPrefix)) drops[key.substr(kDropPrefix.size())] = value;
  }
  json pps = json::array();
  json bps = json::array();
  for (const auto& p : s.history) {
    pps.push_back(tenths(p.packets_per_second));
    bps.push_back(tenths(p.bytes_per_second));
  }
  const RateHistory::Point now = s.history.empty() ? RateHistory::Point{} : s.history.back();
  json links = json::array();
  int64_t up = 0;
  for (const auto& peer : s.mesh) {
    up += peer.up ? 1 : 0;
    if (debug_allowed) {
      links.push_back({{"name", peer.name}, {"url", peer.url}, {"up", peer.up}});
    } else {
      links.push_back({{"up", peer.up}});
    }
  }
  json stun = {{"enabled", s.stun}};
  int64_t stun_total = 0;
  for (const char* k : {"success", "not_stun", "read_error", "write_error"}) {
    const int64_t v = counter(c, std::string("stun_requests_") + k);
    stun[k] = v;
    stun_total += v;
  }
  stun["requests"] = stun_total;
  json tls = nullptr;
  if (s.tls_not_after) {
    tls = {{"not_after", utc_text(*s.tls_not_after)},
           {"not_after_unix", *s.tls_not_after},
           {"expires_in_seconds", *s.tls_not_after - s.now_unix}};
  }
  json j = {
      {"version", s.version},
      {"server_key", s.server_key},
      {"uptime_seconds", s.uptime_seconds},
      {"clients",
       {{"total", counter(c, "gauge_current_connections")},
        {"home", counter(c, "gauge_current_home_connections")}}},
      {"received",
       {{"packets", counter(c, "packets_received")}, {"bytes", counter(c, "bytes_received")}}},
      {"sent", {{"packets", counter(c, "packets_sent")}, {"bytes", counter(c, "bytes_sent")}}},
      {"dropped",
       {{"packets", counter(c, "packets_dropped")},
        {"bytes", counter(c, "bytes_dropped")},
        {"reasons", drops}}},
      {"rate",
       {{"packets_per_second", tenths(now.packets_per_second)},
        {"bytes_per_second", tenths(now.bytes_per_second)}}},
      {"history",
       {{"interval_seconds", 1},
        {"capacity", s.history_capacity},
        {"packets_per_second", pps},
        {"bytes_per_second", bps}}},
      {"stun", stun},
      {"mesh", {{"peers", s.mesh.size()}, {"up", up}, {"links", links}}},
      {"tls", tls},
  };
  return j.dump() + "\n";
}

}  // namespace derp::server
