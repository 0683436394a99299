#include "common/exit_codes.h"

namespace derp::tools {

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage:
      return kExitUsage;
    case ErrorKind::kDns:
      return kExitDns;
    case ErrorKind::kConnect:
      return kExitConnect;
    case ErrorKind::kTls:
      return kExitTls;
    case ErrorKind::kHttp:
      return kExitHttp;
    case ErrorKind::kProtocol:
      return kExitProtocol;
    case ErrorKind::kTimeout:
      return kExitTimeout;
    case ErrorKind::kIo:
      return kExitIo;
    // A client closed under us is the tool's own doing (signal, shutdown): not a network fault.
    case ErrorKind::kClosed:
      return kExitIo;
    case ErrorKind::kInternal:
      return kExitInternal;
  }
  return kExitInternal;
}

}  // namespace derp::tools
