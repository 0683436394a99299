// libsodium must be initialised once before any of its functions is used.
#pragma once

namespace derp::codec {

// Calls sodium_init() exactly once per process (thread-safe); aborts if libsodium cannot start,
// since no key or box operation is safe without it.
void ensure_sodium();

}  // namespace derp::codec
