// A tiny HTTP/1.1 server on 127.0.0.1 for tests that need something to call (the relay's
// admission controller): Asio acceptor + Beast parser on its own thread; every request is
// recorded and answered by a callback.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace derp::test {

class HttpStub {
 public:
  struct Answer {
    int status = 200;
    std::string body;
  };
  struct Seen {
    std::string method;
    std::string target;
    std::string content_type;
    std::string body;
  };
  using Handler = std::function<Answer(const Seen&)>;

  explicit HttpStub(Handler handler);
  ~HttpStub();
  HttpStub(const HttpStub&) = delete;
  HttpStub& operator=(const HttpStub&) = delete;

  uint16_t port() const;
  std::string url(const std::string& path = "/admit") const;
  std::vector<Seen> requests() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace derp::test
