// A loopback TCP forwarder that can black-hole its connections: told to, it stops forwarding
// in both directions without closing either socket, as a dead middlebox or a route that
// silently drops packets does. Neither end sees a FIN or a reset; only a read deadline (or TCP
// keepalive, much later) can tell. Tests put it between a client and a relay.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace derp::test {

class Cutter {
 public:
  // Listens on 127.0.0.1 at an ephemeral port and forwards each accepted connection to
  // 127.0.0.1:target_port. nullptr (and a gtest failure) if it cannot listen.
  static std::unique_ptr<Cutter> start(uint16_t target_port);
  ~Cutter();  // closes every socket, black-holed ones included
  Cutter(const Cutter&) = delete;
  Cutter& operator=(const Cutter&) = delete;

  uint16_t port() const;
  std::string url() const;  // "http://127.0.0.1:<port>/derp"
  // Every connection open now stops forwarding both ways; its sockets stay open. Connections
  // accepted afterwards forward as usual (a fresh path). Returns how many were cut.
  size_t black_hole();
  size_t accepted() const;  // connections accepted so far
  // True once `n` connections have been accepted (before or during the wait).
  bool wait_accepted(size_t n, std::chrono::milliseconds t);

 private:
  struct Impl;
  explicit Cutter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace derp::test
