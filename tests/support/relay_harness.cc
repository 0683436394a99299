#include "support/relay_harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <random>

namespace derp::test {

using Clock = std::chrono::steady_clock;

namespace {
int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<int64_t>(0, left.count()));
}
}  // namespace

// ---- RawConn

RawConn::RawConn(uint16_t port, const char* source) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    ADD_FAILURE() << "socket: " << std::strerror(errno);
    return;
  }
  if (source != nullptr) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    if (::inet_pton(AF_INET, source, &from.sin_addr) != 1 ||
        ::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
      ADD_FAILURE() << "bind " << source << ": " << std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
      return;
    }
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ADD_FAILURE() << "connect 127.0.0.1:" << port << ": " << std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawConn::~RawConn() { close(); }

void RawConn::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void RawConn::shrink_receive_buffer(int bytes) {
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

bool RawConn::write(std::span<const uint8_t> bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

bool RawConn::write(std::string_view text) {
  return write({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

bool RawConn::fill(Clock::time_point deadline) {
  if (fd_ < 0) return false;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    uint8_t tmp[65536];
    ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf_.insert(buf_.end(), tmp, tmp + n);
    return true;
  }
}

std::optional<std::vector<uint8_t>> RawConn::read_exact(size_t n, std::chrono::milliseconds t) {
  const auto deadline = Clock::now() + t;
  while (buf_.size() < n) {
    if (!fill(deadline)) return std::nullopt;
  }
  std::vector<uint8_t> out(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(n));
  buf_.erase(buf_.begin(), buf_.begin() + static_cast<ptrdiff_t>(n));
  return out;
}

std::optional<std::string> RawConn::read_http_head(std::chrono::milliseconds t) {
  const auto deadline = Clock::now() + t;
  static constexpr std::string_view kEnd = "\r\n\r\n";
  for (;;) {
    auto it = std::search(buf_.begin(), buf_.end(), kEnd.begin(), kEnd.end());
    if (it != buf_.end()) {
      auto end = it + static_cast<ptrdiff_t>(kEnd.size());
      std::string head(buf_.begin(), end);
      buf_.erase(buf_.begin(), end);
      return head;
    }
    if (!fill(deadline)) return std::nullopt;
  }
}

std::optional<std::string> RawConn::read_http_response(std::chrono::milliseconds t) {
  auto head = read_http_head(t);
  if (!head) return std::nullopt;
  size_t len = 0;
  std::string lower = *head;
  std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
  auto pos = lower.find("\r\ncontent-length:");
  if (pos != std::string::npos) len = std::stoul(lower.substr(pos + 17));
  auto body = read_exact(len, t);
  if (!body) return std::nullopt;
  return *head + std::string(body->begin(), body->end());
}

bool RawConn::wait_closed(std::chrono::milliseconds t) {
  const auto deadline = Clock::now() + t;
  buf_.clear();
  while (fill(deadline)) buf_.clear();
  if (Clock::now() >= deadline) return false;
  return true;
}

uint16_t RawConn::local_port() const {
  sockaddr_in sa{};
  socklen_t len = sizeof sa;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

std::unique_ptr<Server> start_relay(ServerOptions o) {
  if (o.private_key.is_zero()) o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  if (o.threads == 0) o.threads = 2;
  auto s = Server::start(std::move(o));
  if (!s) {
    ADD_FAILURE() << "Server::start: " << s.error().message;
    return nullptr;
  }
  return std::move(*s);
}

std::function<void(std::string_view)> LogWatch::sink() {
  return [this](std::string_view line) {
    {
      std::lock_guard lock(mu_);
      lines_.emplace_back(line);
    }
    cv_.notify_all();
  };
}

bool LogWatch::wait_for(std::string_view needle, std::chrono::milliseconds t) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, t, [&] {
    return std::any_of(lines_.begin(), lines_.end(),
                       [&](const std::string& l) { return l.find(needle) != std::string::npos; });
  });
}

std::string LogWatch::all() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (auto& l : lines_) out += l + "\n";
  return out;
}

// ---- Frames

std::vector<uint8_t> Frame::bytes() const {
  return frame_bytes(static_cast<FrameType>(type), payload);
}

NodePublic frame_key(const Frame& f) {
  if (f.payload.size() < kKeyLen) return {};
  return NodePublic::from_bytes(f.payload.data());
}

std::unique_ptr<DerpConn> DerpConn::connect(uint16_t port, const NodePrivate& key,
                                            const NodePublic& server, Options opts) {
  auto c = std::make_unique<DerpConn>();
  c->raw_ = std::make_unique<RawConn>(port);
  c->pub_ = key.public_key();
  if (!c->raw_->ok()) return nullptr;
  std::string req = "GET /derp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n";
  if (opts.fast_start) req += "Derp-Fast-Start: 1\r\n";
  req += opts.extra_headers;
  req += "Upgrade: DERP\r\n\r\n";
  ClientInfo info;
  info.mesh_key = opts.mesh_key;
  auto ci = encode_client_info_frame(key, server, info);
  if (!c->raw_->write(req) || !c->raw_->write(ci)) {
    ADD_FAILURE() << "writing the upgrade request failed";
    return nullptr;
  }
  if (!opts.fast_start) {
    auto head = c->raw_->read_http_head();
    if (!head || head->rfind("HTTP/1.1 101 ", 0) != 0) {
      ADD_FAILURE() << "no 101 response, got: " << head.value_or("<nothing>");
      return nullptr;
    }
  }
  auto sk = c->read_frame();
  if (!sk || sk->frame_type() != FrameType::kServerKey) {
    ADD_FAILURE() << "no ServerKey frame";
    return nullptr;
  }
  auto si = c->read_frame();
  if (!si || si->frame_type() != FrameType::kServerInfo) {
    ADD_FAILURE() << "no ServerInfo frame";
    return nullptr;
  }
  auto opened = open_server_info(key, server, si->payload);
  if (!opened) {
    ADD_FAILURE() << "ServerInfo: " << opened.error().message;
    return nullptr;
  }
  return c;
}

bool DerpConn::send_frame(FrameType type, std::span<const uint8_t> payload) {
  return raw_->write(frame_bytes(type, payload));
}

bool DerpConn::send_packet(const NodePublic& dst, std::span<const uint8_t> payload) {
  std::vector<uint8_t> p(dst.bytes.begin(), dst.bytes.end());
  p.insert(p.end(), payload.begin(), payload.end());
  return send_frame(FrameType::kSendPacket, p);
}

bool DerpConn::send_ping(const PingData& data) { return send_frame(FrameType::kPing, data); }

std::optional<Frame> DerpConn::read_frame(std::chrono::milliseconds t, bool keep_alives) {
  for (;;) {
    auto h = raw_->read_exact(kFrameHeaderLen, t);
    if (!h) return std::nullopt;
    FrameHeader hdr = read_frame_header(h->data());
    auto p = raw_->read_exact(hdr.length, t);
    if (!p) return std::nullopt;
    if (!keep_alives && hdr.type == static_cast<uint8_t>(FrameType::kKeepAlive)) continue;
    return Frame{hdr.type, std::move(*p)};
  }
}

std::optional<std::vector<Frame>> DerpConn::sync() {
  PingData data{};
  ++ping_seq_;
  std::memcpy(data.data(), &ping_seq_, sizeof ping_seq_);
  data[0] ^= 0xa5;
  if (!send_ping(data)) return std::nullopt;
  std::vector<Frame> before;
  for (;;) {
    auto f = read_frame();
    if (!f) return std::nullopt;
    if (f->frame_type() == FrameType::kPong &&
        std::equal(data.begin(), data.end(), f->payload.begin(), f->payload.end())) {
      return before;
    }
    before.push_back(std::move(*f));
  }
}

// ---- Child

std::unique_ptr<Child> Child::spawn(const std::vector<std::string>& argv, const std::string& cwd) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return nullptr;
  pid_t pid = ::fork();
  if (pid < 0) return nullptr;
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) _exit(127);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  auto c = std::make_unique<Child>();
  c->pid_ = pid;
  c->out_fd_ = out[0];
  c->err_fd_ = err[0];
  return c;
}

Child::~Child() {
  if (!exited_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

std::optional<std::string> Child::read_stdout_line(std::chrono::milliseconds t) {
  const auto deadline = Clock::now() + t;
  for (;;) {
    auto nl = out_.find('\n');
    if (nl != std::string::npos) {
      std::string line = out_.substr(0, nl);
      out_.erase(0, nl + 1);
      return line;
    }
    pollfd p{out_fd_, POLLIN, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    char buf[4096];
    ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n <= 0) return std::nullopt;
    out_.append(buf, static_cast<size_t>(n));
  }
}

void Child::signal(int sig) {
  if (pid_ > 0 && !exited_) ::kill(pid_, sig);
}

int Child::wait(std::chrono::milliseconds t) {
  const auto deadline = Clock::now() + t;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    pollfd p[2] = {{out_open ? out_fd_ : -1, POLLIN, 0}, {err_open ? err_fd_ : -1, POLLIN, 0}};
    int r = ::poll(p, 2, remaining_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      exited_ = true;
      return -1;
    }
    char buf[4096];
    if (out_open && (p[0].revents & (POLLIN | POLLHUP))) {
      ssize_t n = ::read(out_fd_, buf, sizeof buf);
      if (n <= 0)
        out_open = false;
      else
        out_.append(buf, static_cast<size_t>(n));
    }
    if (err_open && (p[1].revents & (POLLIN | POLLHUP))) {
      ssize_t n = ::read(err_fd_, buf, sizeof buf);
      if (n <= 0)
        err_open = false;
      else
        err_.append(buf, static_cast<size_t>(n));
    }
  }
  int status = 0;
  ::waitpid(pid_, &status, 0);
  exited_ = true;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::vector<uint16_t> free_loopback_ports(size_t n) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < n; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ports.push_back(ntohs(a.sin_port));
    fds.push_back(fd);  // held until all are chosen, so the n ports differ
  }
  for (int fd : fds) ::close(fd);
  return ports;
}

int listen_loopback(int backlog, uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(fd, backlog) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "listen on 127.0.0.1: " << std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

std::optional<int> find_socket_fd(uint16_t local_port, uint16_t peer_port) {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return std::nullopt;
  std::optional<int> found;
  while (dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    sockaddr_in self{}, peer{};
    socklen_t len = sizeof self;
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&self), &len) != 0 ||
        self.sin_family != AF_INET || ntohs(self.sin_port) != local_port) {
      continue;
    }
    len = sizeof peer;
    if (::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &len) != 0 ||
        ntohs(peer.sin_port) != peer_port) {
      continue;  // a listener, or another connection from the same port
    }
    found = static_cast<int>(fd);
    break;
  }
  ::closedir(dir);
  return found;
}

int socket_option_int(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  EXPECT_EQ(::getsockopt(fd, level, name, &v, &len), 0) << "getsockopt " << level << "/" << name;
  return v;
}

}  // namespace derp::test
