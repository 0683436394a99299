// A WebSocket front for client tests (PROTOCOL.md §6.4), until the relay serves WebSocket
// itself: on 127.0.0.1 it accepts `GET /derp` with Upgrade: websocket and subprotocol derp, does
// the DERP upgrade to a plain relay behind it and bridges binary messages to the byte stream.
// A request without Upgrade: websocket gets derper's 426 "DERP requires connection upgrade",
// as a relay behind a proxy that stripped Upgrade: DERP would answer.
#pragma once

#include <cstdint>
#include <memory>

namespace derp::test {

class WsFront {
 public:
  // nullptr (and a gtest failure) if it cannot listen. `split` sends each relay read as
  // messages of at most 7 bytes, so frames straddle messages.
  static std::unique_ptr<WsFront> start(uint16_t relay_port, bool split = false);
  ~WsFront();
  WsFront(const WsFront&) = delete;
  WsFront& operator=(const WsFront&) = delete;

  uint16_t port() const;
  int websocket_sessions() const;  // upgrades accepted so far
  int refused() const;             // 426 answers so far

 private:
  struct Impl;
  explicit WsFront(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace derp::test
