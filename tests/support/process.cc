#include "support/process.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace derp::test {

std::string tool_path(std::string_view tool) {
  return std::string(DERP_BIN_DIR) + "/" + std::string(tool);
}

Process::Process(const std::string& binary, const std::vector<std::string>& args,
                 std::string stdin_data)
    : stdin_data_(std::move(stdin_data)) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  std::vector<std::string> argv_store;
  argv_store.push_back(binary);
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid_ == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execv(binary.c_str(), argv.data());
    const char msg[] = "exec failed\n";
    (void)!::write(2, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  in_fd_ = in[1];
  out_fd_ = out[0];
  err_fd_ = err[0];
  ::fcntl(in_fd_, F_SETFL, O_NONBLOCK);
  ::signal(SIGPIPE, SIG_IGN);  // a child that exits without reading its stdin
  thread_ = std::thread([this] { pump(); });
}

Process::~Process() {
  signal(SIGKILL);
  if (thread_.joinable()) thread_.join();
}

void Process::pump() {
  size_t written = 0;
  if (stdin_data_.empty()) {
    ::close(in_fd_);
    in_fd_ = -1;
  }
  char buf[4096];
  while (out_fd_ >= 0 || err_fd_ >= 0) {
    pollfd fds[3];
    int n = 0;
    int out_i = -1, err_i = -1, in_i = -1;
    if (out_fd_ >= 0) {
      out_i = n;
      fds[n++] = {out_fd_, POLLIN, 0};
    }
    if (err_fd_ >= 0) {
      err_i = n;
      fds[n++] = {err_fd_, POLLIN, 0};
    }
    if (in_fd_ >= 0) {
      in_i = n;
      fds[n++] = {in_fd_, POLLOUT, 0};
    }
    if (::poll(fds, n, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    auto drain = [&](int idx, int& fd, std::string& sink) {
      if (idx < 0 || !(fds[idx].revents & (POLLIN | POLLHUP | POLLERR))) return;
      ssize_t r = ::read(fd, buf, sizeof buf);
      if (r <= 0) {
        ::close(fd);
        fd = -1;
      } else {
        std::lock_guard lk(mu_);
        sink.append(buf, static_cast<size_t>(r));
      }
      cv_.notify_all();
    };
    drain(out_i, out_fd_, out_);
    drain(err_i, err_fd_, err_);
    if (in_i >= 0 && (fds[in_i].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = ::write(in_fd_, stdin_data_.data() + written, stdin_data_.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      if (w < 0 || written == stdin_data_.size()) {
        ::close(in_fd_);
        in_fd_ = -1;
      }
    }
  }
  if (in_fd_ >= 0) ::close(in_fd_);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  std::lock_guard lk(mu_);
  exited_ = true;
  status_ = status;
  cv_.notify_all();
}

std::optional<std::string> Process::wait_for_line(std::string_view needle,
                                                  std::chrono::milliseconds deadline,
                                                  Stream stream) {
  std::unique_lock lk(mu_);
  const auto until = std::chrono::steady_clock::now() + deadline;
  auto find = [&]() -> std::optional<std::string> {
    for (const std::string* s : {&out_, &err_}) {
      if ((stream == Stream::kStdout && s != &out_) || (stream == Stream::kStderr && s != &err_)) {
        continue;
      }
      size_t start = 0;
      for (;;) {
        size_t nl = s->find('\n', start);
        if (nl == std::string::npos) break;
        std::string_view line(s->data() + start, nl - start);
        if (line.find(needle) != std::string_view::npos) return std::string(line);
        start = nl + 1;
      }
    }
    return std::nullopt;
  };
  for (;;) {
    if (auto line = find()) return line;
    if (exited_) return std::nullopt;
    if (cv_.wait_until(lk, until) == std::cv_status::timeout) return find();
  }
}

ProcessResult Process::wait(std::chrono::milliseconds deadline) {
  ProcessResult r;
  {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, deadline, [&] { return exited_; })) {
      r.timed_out = true;
      lk.unlock();
      signal(SIGKILL);
      lk.lock();
      cv_.wait(lk, [&] { return exited_; });
    }
  }
  if (thread_.joinable()) thread_.join();
  std::lock_guard lk(mu_);
  if (WIFEXITED(status_)) r.exit_code = WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) r.signal = WTERMSIG(status_);
  r.out = out_;
  r.err = err_;
  return r;
}

void Process::signal(int sig) {
  std::lock_guard lk(mu_);
  if (!exited_ && pid_ > 0) ::kill(pid_, sig);
}

std::string Process::out() const {
  std::lock_guard lk(mu_);
  return out_;
}

std::string Process::err() const {
  std::lock_guard lk(mu_);
  return err_;
}

ProcessResult run_tool(std::string_view tool, const std::vector<std::string>& args,
                       std::string stdin_data, std::chrono::milliseconds deadline) {
  Process p(tool_path(tool), args, std::move(stdin_data));
  return p.wait(deadline);
}

nlohmann::json run_tool_json(std::string_view tool, std::vector<std::string> args, int want_exit,
                             std::chrono::milliseconds deadline) {
  args.push_back("--json");
  auto r = run_tool(tool, args, "", deadline);
  EXPECT_EQ(r.exit_code, want_exit) << r.err << r.out;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << e.what() << ": " << r.out << r.err;
  }
  return j;
}

}  // namespace derp::test
