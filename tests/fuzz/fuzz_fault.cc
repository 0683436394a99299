// The /debug/fault and --fault grammar on arbitrary text: spec and duration parsers, and the
// start-time check on whatever parses.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "server/faults.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto f = derp::server::parse_fault(text); f.ok()) {
    if (f->percent < 0 || f->percent > 100 || f->latency.count() < 0) std::abort();
    (void)derp::server::fault_refused_at_start(*f);
  }
  if (auto d = derp::server::parse_fault_duration(text); d.ok() && d->count() < 0) std::abort();
  return 0;
}
