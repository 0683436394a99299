// Fault injection: what an operator or a test can make the relay do on purpose (docs/CLI.md,
// "derp-serve --fault"). The spec parser is I/O-free; FaultState is what the relay's hot path
// consults, with one relaxed atomic load when no fault is set.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "derp/key.h"
#include "derp/result.h"

namespace derp::server {

struct FaultSpec {
  enum class Kind {
    kClear,    // "clear": drop and latency off, stalled readers resume ("health=" clears health)
    kHealth,   // "health=TEXT": Health frame to everyone (empty TEXT = healthy again)
    kRestart,  // "restart[=RECONNECT_IN[,TRY_FOR]]": ServerRestarting frame to everyone
    kDrop,     // "drop=PERCENT": drop that share of relayed packets (0 = off)
    kLatency,  // "latency=DURATION": hold every write that long (0 = off)
    kClose,    // "close=nodekey:HEX": close that key's connections
    kStall,    // "stall=nodekey:HEX": stop reading from that key's connections
    kUnstall,  // "unstall=nodekey:HEX": read from them again
    kChurn,    // "churn=nodekey:HEX": act as if a duplicate of the key had spoken last
  };
  Kind kind = Kind::kClear;
  std::string text;  // health
  std::chrono::milliseconds reconnect_in{0};
  std::chrono::milliseconds try_for{0};
  int percent = 0;
  std::chrono::milliseconds latency{0};
  NodePublic key;
};

// Parses one spec; kUsage with the reason on bad input.
Result<FaultSpec> parse_fault(std::string_view spec);

// Why a fault cannot be given at start (derp-serve --fault, ServerOptions::faults), or nullopt
// when it can: the kinds that act on connected clients or undo something have nothing to act
// on before the relay runs.
std::optional<std::string> fault_refused_at_start(const FaultSpec& f);

// "250ms", "2s", "1m", "0": the small duration grammar fault specs use.
Result<std::chrono::milliseconds> parse_fault_duration(std::string_view text);

class FaultState {
 public:
  // Hot path: true when drop or latency is set.
  bool any() const { return any_.load(std::memory_order_relaxed); }
  // Decides whether to drop this packet (call only when any()).
  bool should_drop();
  std::chrono::milliseconds latency() const {
    return std::chrono::milliseconds(latency_ms_.load(std::memory_order_relaxed));
  }
  void set_drop_percent(int p);
  void set_latency(std::chrono::milliseconds d);

 private:
  void update_any();
  std::atomic<bool> any_{false};
  std::atomic<int> drop_percent_{0};
  std::atomic<int64_t> latency_ms_{0};
};

}  // namespace derp::server
