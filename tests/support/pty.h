// Running a tool on a real pseudo-terminal, as a user at a terminal runs it: stdin, stdout and
// stderr are the terminal (forkpty), so isatty() holds and the tool's live output can be seen.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace derp::test {

struct PtyResult {
  int exit_code = -1;      // -1 when killed by a signal
  bool timed_out = false;  // we killed it at the deadline
  // Every byte the tool wrote, stdout and stderr interleaved as the terminal shows them (the
  // terminal turns "\n" into "\r\n").
  std::string bytes;
};

// Environment changes for the child: NAME=value, or NAME removed when the value is nullopt.
using EnvChanges = std::vector<std::pair<std::string, std::optional<std::string>>>;

// Runs DERP_BIN_DIR/<tool> on a new 200x50 pseudo-terminal and reads until it closes the
// terminal, or kills it at the deadline. The child gets TERM=xterm and no NO_COLOR (whatever
// the test runner's terminal is), then `env` on top.
PtyResult run_tool_on_pty(std::string_view tool, const std::vector<std::string>& args,
                          const EnvChanges& env = {},
                          std::chrono::milliseconds deadline = std::chrono::seconds(30));

}  // namespace derp::test
