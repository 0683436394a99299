#include "server/stats.h"

namespace derp::server {

const char* drop_reason_name(DropReason r) {
  switch (r) {
    case DropReason::kUnknownDest:
      return "unknown_dest";
    case DropReason::kUnknownDestOnFwd:
      return "unknown_dest_on_fwd";
    case DropReason::kGoneDisconnected:
      return "gone_disconnected";
    case DropReason::kQueueHead:
      return "queue_head";
    case DropReason::kQueueTail:
      return "queue_tail";
    case DropReason::kWriteError:
      return "write_error";
    case DropReason::kDupClient:
      return "dup_client";
    case DropReason::kFaultInjected:
      return "fault_injected";
    case DropReason::kCount:
      break;
  }
  return "unknown";
}

void Stats::drop(DropReason r, bool disco, size_t bytes) {
  drops_[static_cast<int>(r)].fetch_add(1, std::memory_order_relaxed);
  add(Counter::kPacketsDropped);
  add(Counter::kBytesDropped, static_cast<int64_t>(bytes));
  add(disco ? Counter::kPacketsDroppedDisco : Counter::kPacketsDroppedOther);
}

void Stats::fill(std::map<std::string, int64_t>& out) const {
  static constexpr std::array<const char*, static_cast<int>(Counter::kCount)> kNames = {
      "accepts",
      "bytes_received",
      "bytes_sent",
      "packets_received",
      "packets_sent",
      "packets_received_kind_disco",
      "packets_received_kind_other",
      "packets_dropped",
      "bytes_dropped",
      "packets_dropped_type_disco",
      "packets_dropped_type_other",
      "got_ping",
      "sent_pong",
      "peer_gone_disconnected_frames",
      "peer_gone_not_here_frames",
      "packets_forwarded_in",
      "packets_forwarded_out",
      "home_moves_in",
      "home_moves_out",
      "unknown_frames",
      "counter_total_dup_client_conns",
      "sclient_write_timeouts",
      "gauge_current_connections",
      "gauge_current_home_connections",
      "gauge_current_notideal_connections",
      "stun_requests_success",
      "stun_requests_not_stun",
      "stun_requests_read_error",
      "stun_requests_write_error",
      "stun_addrfamily_ipv4",
      "stun_addrfamily_ipv6",
      "rate_limit_per_client_waited",
      "send_queue_waits",
      "tls_listener_rejected_connections",
      "clients_refused_reason_allow_keys",
      "clients_refused_reason_verify_client_url",
      "admission_unreachable_requests",
      "admission_fail_open_admits",
      "derp_websocket_accepts",
      "mesh_frames_refused",
      "mesh_forward_drops",
      "multiforwarder_created",
      "multiforwarder_deleted",
  };
  for (int i = 0; i < static_cast<int>(Counter::kCount); ++i) {
    out[kNames[i]] = v_[i].load(std::memory_order_relaxed);
  }
  // derper's rate-limited listener counts the connections it let through; so do our accepts.
  out["tls_listener_accepted_connections"] = out["accepts"];
  for (int i = 0; i < static_cast<int>(DropReason::kCount); ++i) {
    out[std::string("packets_dropped_reason_") + drop_reason_name(static_cast<DropReason>(i))] =
        drops_[i].load(std::memory_order_relaxed);
  }
}

}  // namespace derp::server
