#include "codec/sodium_init.h"

#include <sodium.h>

#include <cstdio>
#include <cstdlib>

namespace derp::codec {

void ensure_sodium() {
  // A function-local static is initialised exactly once, even with concurrent callers.
  static const bool ok = sodium_init() >= 0;
  if (!ok) {
    std::fputs("libderp: sodium_init() failed\n", stderr);
    std::abort();
  }
}

}  // namespace derp::codec
