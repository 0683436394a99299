// Running the tools as processes in tests: spawn a binary with arguments and optional stdin,
// capture stdout/stderr and the exit code, with deadlines (killed when they pass).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace derp::test {

struct ProcessResult {
  int exit_code = -1;      // -1 when killed by a signal
  int signal = 0;          // the signal that ended it, if any
  bool timed_out = false;  // we killed it at the deadline
  std::string out;
  std::string err;
};

// DERP_BIN_DIR/<tool>.
std::string tool_path(std::string_view tool);

// A running child. The destructor kills (SIGKILL) and reaps it if still running.
class Process {
 public:
  Process(const std::string& binary, const std::vector<std::string>& args,
          std::string stdin_data = "");
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }

  enum class Stream { kEither, kStdout, kStderr };
  // Waits until the stream has a complete line containing `needle`; returns that line, or
  // std::nullopt when the deadline passes or the process ends first.
  std::optional<std::string> wait_for_line(std::string_view needle,
                                           std::chrono::milliseconds deadline,
                                           Stream stream = Stream::kEither);
  // Waits for the exit; at the deadline kills it (timed_out = true).
  ProcessResult wait(std::chrono::milliseconds deadline);
  // Sends a signal (e.g. SIGTERM) if still running.
  void signal(int sig);

  std::string out() const;
  std::string err() const;

 private:
  void pump();  // reader thread: stdin writes, stdout/stderr reads, then reaps

  pid_t pid_ = -1;
  int in_fd_ = -1, out_fd_ = -1, err_fd_ = -1;
  std::string stdin_data_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_, err_;
  bool exited_ = false;
  int status_ = 0;
};

// Runs to completion (or the deadline) and returns everything.
ProcessResult run_tool(std::string_view tool, const std::vector<std::string>& args,
                       std::string stdin_data = "",
                       std::chrono::milliseconds deadline = std::chrono::seconds(30));

// run_tool with --json appended: expects `want_exit` and one JSON document on stdout (a test
// failure otherwise, naming the output); returns it (null when it did not parse).
nlohmann::json run_tool_json(std::string_view tool, std::vector<std::string> args,
                             int want_exit = 0,
                             std::chrono::milliseconds deadline = std::chrono::seconds(60));

}  // namespace derp::test
