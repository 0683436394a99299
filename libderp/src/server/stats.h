// The relay's counters, under derper's expvar names (PROTOCOL.md §6.6).
//
// Relaxed atomics: increments never order anything, and counters() only needs a recent sum.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>

namespace derp::server {

enum class Counter : int {
  kAccepts,
  kBytesReceived,
  kBytesSent,
  kPacketsReceived,
  kPacketsSent,
  kPacketsReceivedDisco,
  kPacketsReceivedOther,
  kPacketsDropped,
  kBytesDropped,
  kPacketsDroppedDisco,
  kPacketsDroppedOther,
  kGotPing,
  kSentPong,
  kPeerGoneDisconnectedFrames,
  kPeerGoneNotHereFrames,
  kPacketsForwardedIn,
  kPacketsForwardedOut,
  kHomeMovesIn,
  kHomeMovesOut,
  kUnknownFrames,
  kTotalDupClientConns,
  kWriteTimeouts,
  kGaugeCurrentConnections,
  kGaugeHomeConnections,
  kGaugeNotIdealConnections,
  // STUN server (PROTOCOL.md §6.6, derper's "stun" set): requests by disposition, and by the
  // sender's address family as the socket reports it.
  kStunRequestsSuccess,
  kStunRequestsNotStun,
  kStunRequestsReadError,
  kStunRequestsWriteError,
  kStunAddrFamilyIpv4,
  kStunAddrFamilyIpv6,
  // Limits and admission (PROTOCOL.md §4.11).
  kRateLimitWaited,          // derper's rate_limit_per_client_waited
  kQueueWaits,  // ours: a sender paused for a full destination queue (ServerOptions::queue_wait)
  kAcceptRejected,           // over the accept limit (derper's tls_listener set)
  kRefusedAllowKeys,         // not in the allow-keys file
  kRefusedVerifyUrl,         // refused by (or, fail-closed, for want of) the admission URL
  kAdmissionUnreachable,     // ours: requests to the admission URL that got no HTTP answer
  kAdmittedFailOpen,         // ours: clients admitted unchecked, the admission URL unreachable
  kWebSocketAccepts,  // derper's derp_websocket_accepts
  // Mesh: WatchConns / ClosePeer / ForwardPacket from a connection without the mesh key (the
  // connection is closed), and packets a mesh link could not carry (queue full, link down).
  kMeshFramesRefused,
  kMeshForwardDrops,
  // derper's: a key became reachable through a second mesh link / went back to one.
  kMultiForwarderCreated,
  kMultiForwarderDeleted,
  kCount,
};

enum class DropReason : int {
  kUnknownDest,
  kUnknownDestOnFwd,
  kGoneDisconnected,
  kQueueHead,
  kQueueTail,
  kWriteError,
  kDupClient,
  kFaultInjected,  // ours: the drop=PERCENT fault
  kCount,
};

const char* drop_reason_name(DropReason r);

class Stats {
 public:
  void add(Counter c, int64_t n = 1) {
    v_[static_cast<int>(c)].fetch_add(n, std::memory_order_relaxed);
  }
  int64_t get(Counter c) const { return v_[static_cast<int>(c)].load(std::memory_order_relaxed); }
  void drop(DropReason r, bool disco, size_t bytes);

  // Everything above under its expvar name.
  void fill(std::map<std::string, int64_t>& out) const;

 private:
  std::array<std::atomic<int64_t>, static_cast<int>(Counter::kCount)> v_{};
  std::array<std::atomic<int64_t>, static_cast<int>(DropReason::kCount)> drops_{};
};

}  // namespace derp::server
