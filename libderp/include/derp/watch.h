// The watch-connection loop over a derp::Client: the counterpart of Go's
// derphttp.Client.RunWatchConnectionLoop (PROTOCOL.md §4.12, §7.4). A mesh-key client asks the
// relay for every connected key (WatchConns) after each (re)connect and then follows the live
// PeerPresent / PeerGone stream; this loop turns that into add / gone callbacks with the
// accounting callers need (no duplicate adds, synthetic gones after a reconnect).
//
// "Initial list done": after WatchConns the loop sends a Ping. The relay queues the PeerPresent
// of every key it has before it reads the Ping, and writes queued control frames before the
// Pong, so the Pong marks the end of the initial list exactly (no quiet-period guess).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "derp/client.h"
#include "derp/key.h"
#include "derp/result.h"

namespace derp {

struct WatchPeer {
  NodePublic key;
  bool has_endpoint = false;
  std::array<uint8_t, 16> ip16{};  // IPv4 as ::ffff:a.b.c.d
  uint16_t port = 0;
  bool has_flags = false;
  uint8_t flags = 0;

  // "1.2.3.4:5678" / "[::1]:5678", or "" without an endpoint.
  std::string endpoint() const;
  friend bool operator==(const WatchPeer&, const WatchPeer&) = default;
};

struct WatchGone {
  NodePublic key;
  PeerGoneReason reason = PeerGoneReason::kDisconnected;
  // True when the relay never said so: the key was present before a reconnect and missing
  // from the new connection's initial list, or the link stayed down past stale_after.
  // reason is then kMeshConnBroke.
  bool synthetic = false;
};

struct WatchCallbacks {
  // A key connected (or its endpoint/flags changed). Never repeated for an unchanged peer.
  std::function<void(const WatchPeer&)> add;
  // A key left. Only for keys add() reported.
  std::function<void(const WatchGone&)> gone;
  // The initial list of connection `generation` is complete (every add of it was delivered).
  std::function<void(uint64_t generation, size_t peers)> synced;
  // The connection dropped or a connect failed; the loop waits `retry_in` and tries again.
  std::function<void(const Error& error, std::chrono::milliseconds retry_in)> disconnected;
};

struct WatchOptions {
  std::chrono::milliseconds min_backoff{100};   // first retry delay; doubles per failure
  std::chrono::milliseconds max_backoff{5000};  // cap (Go's retryInterval)
  // Link down this long: every known key gets a synthetic gone (its forwarder is useless).
  // 0 = only at the next successful sync.
  std::chrono::milliseconds stale_after{5000};
  // A relay with this key is ourselves (derper's self-connect check): the loop stops.
  NodePublic ignore_server_key;
  std::function<void(std::string_view)> log;  // reconnects, backoff, self-connect
};

// Runs on its own thread until stop() (or destruction). The client must carry the mesh key;
// the loop owns its recv() side (do not call recv() on it elsewhere). Other threads may still
// send on the client (e.g. forward_packet).
class WatchLoop {
 public:
  static std::unique_ptr<WatchLoop> start(Client& client, WatchCallbacks callbacks,
                                          WatchOptions options = {});
  ~WatchLoop();  // stop()
  WatchLoop(const WatchLoop&) = delete;
  WatchLoop& operator=(const WatchLoop&) = delete;

  // Ends the loop and joins its thread. Callbacks may still run until this returns.
  // Closes the client (the only way to interrupt a blocking connect). Idempotent.
  void stop();
  // True after a self-connect was detected (the loop ended on its own).
  bool self_connect() const;
  // Connection generation whose initial list has been delivered; 0 before the first.
  uint64_t synced_generation() const;

 private:
  struct Impl;
  explicit WatchLoop(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace derp
