// Durations on the command line: "250ms", "1.5s", "2m", "1h", "1m30s"; a bare number means
// seconds ("5" = 5s). Units: ns, us (or µs), ms, s, m, h, as Go's time.ParseDuration.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "derp/result.h"

namespace derp::tools {

// Fails with kUsage ("bad duration \"5x\": unknown unit \"x\" (use ms, s, m, h)"). Negative
// values are refused.
Result<std::chrono::nanoseconds> parse_duration(std::string_view text);

// parse_duration() for a flag where zero means nothing (a timeout, an interval): errors name the
// flag, "--timeout must be more than 0 (got 0)".
Result<std::chrono::nanoseconds> parse_positive_duration(std::string_view flag,
                                                         std::string_view text);

// Rounded up to whole milliseconds (so "1us" does not become a zero timeout).
std::chrono::milliseconds to_millis(std::chrono::nanoseconds d);

// "1.5s", "250ms", "2m0s"-free compact form for messages: "1.5s", "250ms", "120s".
std::string format_duration(std::chrono::nanoseconds d);

}  // namespace derp::tools
