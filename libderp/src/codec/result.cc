#include "derp/result.h"

namespace derp {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage:
      return "usage";
    case ErrorKind::kDns:
      return "dns";
    case ErrorKind::kConnect:
      return "connect";
    case ErrorKind::kTls:
      return "tls";
    case ErrorKind::kHttp:
      return "http";
    case ErrorKind::kProtocol:
      return "protocol";
    case ErrorKind::kTimeout:
      return "timeout";
    case ErrorKind::kIo:
      return "io";
    case ErrorKind::kClosed:
      return "closed";
    case ErrorKind::kInternal:
      return "internal";
  }
  // Not reachable with a valid enumerator; a cast-in garbage value still gets a stable name.
  return "internal";
}

}  // namespace derp
