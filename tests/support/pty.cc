#include "support/pty.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "support/process.h"

extern char** environ;

namespace derp::test {

namespace {

// This process's environment with the changes applied, as "NAME=value" strings. Built before
// the fork: the child of a threaded process may only exec.
std::vector<std::string> child_environment(const EnvChanges& changes) {
  std::map<std::string, std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view kv(*e);
    const size_t eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    vars[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
  }
  EnvChanges all = {{"TERM", "xterm"}, {"NO_COLOR", std::nullopt}};
  all.insert(all.end(), changes.begin(), changes.end());
  for (const auto& [name, value] : all) {
    if (value) {
      vars[name] = *value;
    } else {
      vars.erase(name);
    }
  }
  std::vector<std::string> out;
  for (const auto& [name, value] : vars) out.push_back(name + "=" + value);
  return out;
}

int exit_code_of(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

}  // namespace

PtyResult run_tool_on_pty(std::string_view tool, const std::vector<std::string>& args,
                          const EnvChanges& env, std::chrono::milliseconds deadline) {
  PtyResult out;
  std::vector<std::string> argv_store = {tool_path(tool)};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_store = child_environment(env);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  winsize size{};
  size.ws_row = 50;
  size.ws_col = 200;
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, &size);
  if (pid < 0) {
    out.bytes = std::string("forkpty: ") + std::strerror(errno);
    return out;
  }
  if (pid == 0) {
    ::execve(argv[0], argv.data(), envp.data());
    const char msg[] = "exec failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::fcntl(master, F_SETFD, FD_CLOEXEC);  // not into tools other tests spawn meanwhile

  // Read until the terminal's last user closes it (read() fails with EIO) or the deadline.
  const auto until = std::chrono::steady_clock::now() + deadline;
  bool closed = false;
  while (!closed) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{master, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) break;
    char buf[4096];
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      closed = true;
      break;
    }
    out.bytes.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  if (!closed) {
    out.timed_out = true;
    ::kill(pid, SIGKILL);
  }
  ::waitpid(pid, &status, 0);
  out.exit_code = exit_code_of(status);
  ::close(master);
  return out;
}

}  // namespace derp::test
