#include "support/cutter.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "support/relay_harness.h"

namespace derp::test {

namespace {

int connect_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// One forwarded connection: `near` is the accepted socket, `far` the one to the target. Each
// direction holds at most one read's worth of bytes not yet written (back-pressure both ways).
struct Link {
  int near = -1;
  int far = -1;
  std::vector<uint8_t> to_far;
  std::vector<uint8_t> to_near;
  bool holed = false;
};

}  // namespace

struct Cutter::Impl {
  int listener = -1;
  uint16_t port = 0;
  uint16_t target = 0;
  int wake[2] = {-1, -1};
  std::thread thread;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  size_t accepted = 0;
  std::vector<Link> links;  // (mu) closed ones are removed; holed ones stay until the end

  void poke() {
    const char b = 1;
    (void)!::write(wake[1], &b, 1);
  }

  // Moves bytes from `from` into `buf`, or `buf` into `to`. False when the link is over.
  static bool pump_in(int from, std::vector<uint8_t>& buf) {
    uint8_t tmp[16384];
    const ssize_t n = ::recv(from, tmp, sizeof tmp, 0);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    buf.assign(tmp, tmp + n);
    return true;
  }
  static bool pump_out(int to, std::vector<uint8_t>& buf) {
    const ssize_t n = ::send(to, buf.data(), buf.size(), MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    buf.erase(buf.begin(), buf.begin() + n);
    return true;
  }

  void run() {
    for (;;) {
      std::vector<pollfd> fds{{wake[0], POLLIN, 0}, {listener, POLLIN, 0}};
      std::vector<size_t> owner;  // link index of fds[2 + 2k] and fds[3 + 2k]
      {
        std::lock_guard lk(mu);
        if (stopping) return;
        for (size_t i = 0; i < links.size(); ++i) {
          const Link& l = links[i];
          if (l.holed) continue;
          const short near_ev = static_cast<short>((l.to_far.empty() ? POLLIN : 0) |
                                                   (l.to_near.empty() ? 0 : POLLOUT));
          const short far_ev = static_cast<short>((l.to_near.empty() ? POLLIN : 0) |
                                                  (l.to_far.empty() ? 0 : POLLOUT));
          fds.push_back({l.near, near_ev, 0});
          fds.push_back({l.far, far_ev, 0});
          owner.push_back(i);
        }
      }
      if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return;
      if (fds[0].revents) {
        char drain[64];
        (void)!::read(wake[0], drain, sizeof drain);
      }
      std::lock_guard lk(mu);
      if (stopping) return;
      if (fds[1].revents & POLLIN) accept_one();
      std::vector<size_t> dead;
      for (size_t k = 0; k < owner.size(); ++k) {
        Link& l = links[owner[k]];
        if (l.holed) continue;  // cut while we polled: its bytes stay where they are
        const short nr = fds[2 + 2 * k].revents, fr = fds[3 + 2 * k].revents;
        bool ok = true;
        constexpr short kReadable = POLLIN | POLLHUP | POLLERR;
        if ((nr & kReadable) && l.to_far.empty()) ok = pump_in(l.near, l.to_far);
        if (ok && (fr & kReadable) && l.to_near.empty()) ok = pump_in(l.far, l.to_near);
        if (ok && (nr & POLLOUT)) ok = pump_out(l.near, l.to_near);
        if (ok && (fr & POLLOUT)) ok = pump_out(l.far, l.to_far);
        if (!ok) dead.push_back(owner[k]);
      }
      for (auto it = dead.rbegin(); it != dead.rend(); ++it) {
        ::close(links[*it].near);
        ::close(links[*it].far);
        links.erase(links.begin() + static_cast<ptrdiff_t>(*it));
      }
    }
  }

  void accept_one() {  // (mu held)
    const int near = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (near < 0) return;
    const int far = connect_loopback(target);
    if (far < 0) {
      ::close(near);
      return;
    }
    set_nonblocking(near);
    set_nonblocking(far);
    links.push_back(Link{near, far, {}, {}, false});
    ++accepted;
    cv.notify_all();
  }
};

Cutter::Cutter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Cutter> Cutter::start(uint16_t target_port) {
  auto impl = std::make_unique<Impl>();
  impl->target = target_port;
  impl->listener = listen_loopback(64, &impl->port);
  if (impl->listener < 0) return nullptr;
  if (::pipe2(impl->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    ADD_FAILURE() << "cutter: pipe2 failed";
    ::close(impl->listener);
    return nullptr;
  }
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->run(); });
  return std::unique_ptr<Cutter>(new Cutter(std::move(impl)));
}

Cutter::~Cutter() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->poke();
  if (impl_->thread.joinable()) impl_->thread.join();
  for (const Link& l : impl_->links) {
    ::close(l.near);
    ::close(l.far);
  }
  ::close(impl_->listener);
  ::close(impl_->wake[0]);
  ::close(impl_->wake[1]);
}

uint16_t Cutter::port() const { return impl_->port; }

std::string Cutter::url() const {
  return "http://127.0.0.1:" + std::to_string(impl_->port) + "/derp";
}

size_t Cutter::black_hole() {
  size_t n = 0;
  {
    std::lock_guard lk(impl_->mu);
    for (Link& l : impl_->links) {
      if (!l.holed) ++n;
      l.holed = true;
    }
  }
  impl_->poke();  // the loop stops polling them
  return n;
}

size_t Cutter::accepted() const {
  std::lock_guard lk(impl_->mu);
  return impl_->accepted;
}

bool Cutter::wait_accepted(size_t n, std::chrono::milliseconds t) {
  std::unique_lock lk(impl_->mu);
  return impl_->cv.wait_for(lk, t, [&] { return impl_->accepted >= n; });
}

}  // namespace derp::test
