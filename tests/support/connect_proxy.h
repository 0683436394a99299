// An HTTP CONNECT proxy on 127.0.0.1 for client tests: it records each request head, answers
// with a chosen status, and on 2xx pipes the tunnel to a fixed loopback backend port whatever
// the CONNECT target says (so tests can name unresolvable `.invalid` relays).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace derp::test {

class ConnectProxy {
 public:
  // nullptr (and a gtest failure) if it cannot listen.
  static std::unique_ptr<ConnectProxy> start(uint16_t backend_port, int status = 200);
  ~ConnectProxy();
  ConnectProxy(const ConnectProxy&) = delete;
  ConnectProxy& operator=(const ConnectProxy&) = delete;

  uint16_t port() const;
  std::string url() const;                 // "http://127.0.0.1:<port>"
  std::vector<std::string> requests() const;  // the request heads received so far

 private:
  struct Impl;
  explicit ConnectProxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace derp::test
