// The one exit-code table shared by every derp-* tool. docs/CLI.md documents it; keep in step.
#pragma once

#include <string>
#include <vector>

#include "derp/result.h"

namespace derp::tools {

enum ExitCode : int {
  kExitOk = 0,
  kExitCheckFailed = 1,  // the tool ran, but what it checked failed (lost pings, --assert)
  kExitUsage = 2,        // bad flag, argument, key or config file
  kExitDns = 3,
  kExitConnect = 4,  // TCP connect failed
  kExitTls = 5,
  kExitHttp = 6,      // HTTP error status, upgrade refused, malformed HTTP
  kExitProtocol = 7,  // DERP handshake or protocol violation (incl. server-key mismatch)
  kExitTimeout = 8,
  kExitIo = 9,  // an established connection broke
  kExitInternal = 10,
};

// The exit code for a library error kind.
int exit_code_for(ErrorKind kind);

// One row of the documented table (docs/CLI.md, the man pages' EXIT STATUS): the code, the
// --json error.layer names that exit with it (derived from exit_code_for(), so the table cannot
// drift from what the tools do), and what it means.
struct ExitCodeDoc {
  int code;
  std::vector<std::string> layers;
  std::string meaning;
};
std::vector<ExitCodeDoc> exit_code_docs();

// The "layer" of a check failure (exit 1) in --json: what the tool measured was not good enough
// (lost pings, a violated --assert). Not a library ErrorKind: the library never fails that way.
inline constexpr const char* kCheckLayer = "check";

// What the user might try, shown with a failure ("" when there is nothing useful to say):
// error.hint when the library set one, else one derived from the layer and its detail (HTTP
// status, TLS verification reason).
// via_derp_map: the relay was dialled from a --derp-map node, whose CertName (not --cert-name)
// says how to verify it.
std::string failure_hint(const Error& error, bool via_derp_map = false);

}  // namespace derp::tools
