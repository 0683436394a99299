#include "server/faults.h"

#include <fmt/format.h>

#include <charconv>
#include <random>

namespace derp::server {

namespace {

Error bad(std::string_view spec, std::string_view why) {
  return Error(ErrorKind::kUsage, fmt::format("fault {:?}: {}", spec, why));
}

}  // namespace

Result<std::chrono::milliseconds> parse_fault_duration(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0 || i > 9) {
    return Error(ErrorKind::kUsage, fmt::format("bad duration {:?}", text));
  }
  int64_t n = 0;
  std::from_chars(text.data(), text.data() + i, n);
  const std::string_view unit = text.substr(i);
  if (unit == "ms") return std::chrono::milliseconds(n);
  if (unit == "s" || (unit.empty() && n == 0)) return std::chrono::milliseconds(n * 1000);
  if (unit == "m") return std::chrono::milliseconds(n * 60000);
  return Error(ErrorKind::kUsage,
               fmt::format("bad duration {:?} (want a number with ms, s or m)", text));
}

Result<FaultSpec> parse_fault(std::string_view spec) {
  FaultSpec f;
  const size_t eq = spec.find('=');
  const std::string_view name = spec.substr(0, eq);
  const bool has_value = eq != std::string_view::npos;
  const std::string_view value = has_value ? spec.substr(eq + 1) : std::string_view();
  auto need_key = [&](FaultSpec::Kind k) -> Result<FaultSpec> {
    if (!has_value) return bad(spec, "needs =nodekey:HEX");
    auto key = NodePublic::parse_any(value);
    if (!key) return bad(spec, key.error().message);
    f.kind = k;
    f.key = *key;
    return f;
  };
  if (name == "clear" && !has_value) {
    f.kind = FaultSpec::Kind::kClear;
    return f;
  }
  if (name == "health") {
    if (!has_value) return bad(spec, "needs =TEXT (empty TEXT clears)");
    f.kind = FaultSpec::Kind::kHealth;
    f.text = std::string(value);
    return f;
  }
  if (name == "restart") {
    f.kind = FaultSpec::Kind::kRestart;
    f.reconnect_in = std::chrono::milliseconds(1000);
    f.try_for = std::chrono::milliseconds(30000);
    if (!has_value) return f;
    const size_t comma = value.find(',');
    auto r = parse_fault_duration(value.substr(0, comma));
    if (!r) return bad(spec, r.error().message);
    f.reconnect_in = *r;
    if (comma != std::string_view::npos) {
      auto t = parse_fault_duration(value.substr(comma + 1));
      if (!t) return bad(spec, t.error().message);
      f.try_for = *t;
    }
    return f;
  }
  if (name == "drop") {
    std::string_view v = value;
    if (!v.empty() && v.back() == '%') v.remove_suffix(1);
    int p = -1;
    auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), p);
    if (!has_value || ec != std::errc() || ptr != v.data() + v.size() || p < 0 || p > 100) {
      return bad(spec, "want drop=PERCENT, 0 to 100");
    }
    f.kind = FaultSpec::Kind::kDrop;
    f.percent = p;
    return f;
  }
  if (name == "latency") {
    if (!has_value) return bad(spec, "want latency=DURATION");
    auto d = parse_fault_duration(value);
    if (!d) return bad(spec, d.error().message);
    f.kind = FaultSpec::Kind::kLatency;
    f.latency = *d;
    return f;
  }
  if (name == "close") return need_key(FaultSpec::Kind::kClose);
  if (name == "stall") return need_key(FaultSpec::Kind::kStall);
  if (name == "unstall") return need_key(FaultSpec::Kind::kUnstall);
  if (name == "churn") return need_key(FaultSpec::Kind::kChurn);
  return bad(spec,
             "unknown fault (want clear, health=, restart=, drop=, latency=, close=, stall=, "
             "unstall=, churn=)");
}

std::optional<std::string> fault_refused_at_start(const FaultSpec& f) {
  using K = FaultSpec::Kind;
  switch (f.kind) {
    case K::kDrop:
    case K::kLatency:
    case K::kHealth:
      return std::nullopt;
    case K::kRestart:
      return "restart= is a one-off frame to the clients connected at that moment, and none is "
             "connected at start";
    case K::kClose:
    case K::kStall:
    case K::kUnstall:
    case K::kChurn:
      return "it acts on a connected node key, and none is connected at start";
    case K::kClear:
      return "clear undoes faults, and none is set before start";
  }
  return "unknown fault";
}

bool FaultState::should_drop() {
  const int p = drop_percent_.load(std::memory_order_relaxed);
  if (p <= 0) return false;
  if (p >= 100) return true;
  thread_local std::minstd_rand rng{std::random_device{}()};
  return static_cast<int>(rng() % 100) < p;
}

void FaultState::set_drop_percent(int p) {
  drop_percent_.store(p, std::memory_order_relaxed);
  update_any();
}

void FaultState::set_latency(std::chrono::milliseconds d) {
  latency_ms_.store(d.count(), std::memory_order_relaxed);
  update_any();
}

void FaultState::update_any() {
  any_.store(drop_percent_.load(std::memory_order_relaxed) > 0 ||
                 latency_ms_.load(std::memory_order_relaxed) > 0,
             std::memory_order_relaxed);
}

}  // namespace derp::server
