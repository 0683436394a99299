// Raw DERP test clients for the relay's integration tests: plain POSIX sockets on 127.0.0.1,
// every read bounded by a deadline (poll), no dependency on derp::Client. Also a tiny child
// process runner for the derp-serve tests.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/key.h"
#include "derp/server.h"

namespace derp::test {

inline constexpr std::chrono::milliseconds kWait{10000};

// Polls `pred` with a short yield until it holds or the deadline passes (for state another
// thread or process changes without telling the test, e.g. a counter or a mesh link).
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds t = kWait) {
  const auto until = std::chrono::steady_clock::now() + t;
  while (std::chrono::steady_clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// A blocking TCP connection to 127.0.0.1:port whose reads give up at a deadline.
class RawConn {
 public:
  // Connects to 127.0.0.1:port; from `source` (another 127.x.y.z) when given, so a test can
  // be a peer that is not 127.0.0.1 (lo answers the whole of 127.0.0.0/8).
  explicit RawConn(uint16_t port, const char* source = nullptr);
  ~RawConn();
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool ok() const { return fd_ >= 0; }
  uint16_t local_port() const;
  int fd() const { return fd_; }
  bool write(std::span<const uint8_t> bytes);
  bool write(std::string_view text);
  // Exactly n bytes, or nullopt on EOF, error or deadline.
  std::optional<std::vector<uint8_t>> read_exact(size_t n, std::chrono::milliseconds t = kWait);
  // Everything up to and including the first "\r\n\r\n".
  std::optional<std::string> read_http_head(std::chrono::milliseconds t = kWait);
  // A whole response: head plus Content-Length bytes of body (none without the header).
  std::optional<std::string> read_http_response(std::chrono::milliseconds t = kWait);
  // True when the peer closes (EOF or reset) before the deadline; data meanwhile is dropped.
  bool wait_closed(std::chrono::milliseconds t = kWait);
  void shrink_receive_buffer(int bytes);
  void close();

 private:
  // Appends at least one byte to buf_; false on EOF/error/deadline.
  bool fill(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::vector<uint8_t> buf_;  // read but not yet handed out
};

struct Frame {
  uint8_t type = 0;
  std::vector<uint8_t> payload;
  FrameType frame_type() const { return static_cast<FrameType>(type); }
  std::vector<uint8_t> bytes() const;  // header + payload
};

// A DERP client speaking raw frames over RawConn.
class DerpConn {
 public:
  struct Options {
    MeshKey mesh_key;
    std::string extra_headers;  // "Name: value\r\n" lines added to the upgrade request
    bool fast_start = false;
  };
  // Upgrade + handshake; the ServerInfo is opened and checked. nullptr (with a gtest failure
  // recorded) when anything is off.
  static std::unique_ptr<DerpConn> connect(uint16_t port, const NodePrivate& key,
                                           const NodePublic& server, Options opts);
  static std::unique_ptr<DerpConn> connect(uint16_t port, const NodePrivate& key,
                                           const NodePublic& server) {
    return connect(port, key, server, Options{});
  }

  RawConn& raw() { return *raw_; }
  const NodePublic& public_key() const { return pub_; }

  bool send_frame(FrameType type, std::span<const uint8_t> payload);
  bool send_packet(const NodePublic& dst, std::span<const uint8_t> payload);
  bool send_ping(const PingData& data);
  // The next frame (KeepAlive skipped unless keep_alives), or nullopt at EOF / deadline.
  std::optional<Frame> read_frame(std::chrono::milliseconds t = kWait, bool keep_alives = false);
  // Sends a Ping with fresh data and returns every frame that arrives before its Pong: a
  // barrier proving the relay processed everything sent earlier on this connection.
  std::optional<std::vector<Frame>> sync();

 private:
  std::unique_ptr<RawConn> raw_;
  NodePublic pub_;
  uint64_t ping_seq_ = 0;
};

// One 51-byte PeerPresent payload's key.
NodePublic frame_key(const Frame& f);

// Starts an in-process relay on 127.0.0.1 with an ephemeral port (fails the test if it can't).
// A zero private key in `o` gets a fresh one.
std::unique_ptr<Server> start_relay(ServerOptions o);

// `n` distinct free TCP ports on 127.0.0.1 (bound, read, released), for relays that must know
// each other's address before they start.
std::vector<uint16_t> free_loopback_ports(size_t n);

// A TCP socket listening on 127.0.0.1 at an ephemeral port (stored in *port), with `backlog`;
// -1 (and a test failure) when the kernel refuses. The caller owns the descriptor.
int listen_loopback(int backlog, uint16_t* port);

// The descriptor of this process's IPv4 TCP socket bound to 127.0.0.1:`local_port` whose peer
// is at `peer_port` (a relay's accepted socket, or a derp::Client's dialed one, in-process).
std::optional<int> find_socket_fd(uint16_t local_port, uint16_t peer_port);
// getsockopt of an int option (-1 and a test failure when it fails).
int socket_option_int(int fd, int level, int name);

// Collects the relay's log lines so a test can wait for one (with a deadline) instead of
// sleeping. Must outlive the server that logs into it.
class LogWatch {
 public:
  std::function<void(std::string_view)> sink();
  // True once a line containing `needle` was logged (before or during the wait).
  bool wait_for(std::string_view needle, std::chrono::milliseconds t = kWait);
  std::string all() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> lines_;
};

// A child process with stdout and stderr on pipes.
class Child {
 public:
  static std::unique_ptr<Child> spawn(const std::vector<std::string>& argv,
                                      const std::string& cwd = "");
  ~Child();
  // One line from stdout (without the newline), or nullopt at EOF / deadline.
  std::optional<std::string> read_stdout_line(std::chrono::milliseconds t = kWait);
  void signal(int sig);
  // Waits for exit (stdout/stderr drained to EOF first, bounded by the deadline); the exit
  // status, or -1 on deadline (the child is then killed), or 128+signal.
  int wait(std::chrono::milliseconds t = kWait);
  const std::string& stderr_text() const { return err_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
  bool exited_ = false;
};

}  // namespace derp::test
