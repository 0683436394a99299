#include "server/client_conn.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "server/relay.h"

namespace derp::server {

namespace {
std::atomic<uint64_t> g_next_conn_id{1};
constexpr size_t kPacketHeadLen = kFrameHeaderLen + kKeyLen;
}  // namespace

ClientConn::ClientConn(Relay& relay, Stats& stats, ChunkPool& pool, const ServerOptions& opts)
    : relay_(relay),
      stats_(stats),
      pool_(pool),
      opts_(opts),
      id_(g_next_conn_id.fetch_add(1, std::memory_order_relaxed)),
      disco_q_(std::max<size_t>(1, opts.per_client_queue_depth)),
      data_q_(std::max<size_t>(1, opts.per_client_queue_depth)) {
  const size_t depth = std::max<size_t>(1, opts.per_client_queue_depth);
  // preamble + two buffers per packet + control frames + pong + keep-alive + health. Reserved
  // in full on the first batch that carries packets; until then control batches need few.
  bufs_capacity_ = 1 + 2 * 2 * depth + kMaxControlPerBatch + 3;
  bufs_.reserve(kSmallBatch);
  encode_keep_alive(keep_alive_buf_);
  const auto now = std::chrono::steady_clock::now();
  rate_bucket_ = TokenBucket(static_cast<double>(opts.client_rate_bytes_per_second),
                             static_cast<double>(rate_burst(opts)), now);
  not_here_bucket_ = TokenBucket(1, 3, now);
}

int64_t rate_burst(const ServerOptions& opts) {
  return std::max<int64_t>(opts.client_rate_burst_bytes, kMinRateBurst);
}

ClientConn::~ClientConn() {
  for (auto& e : inflight_) ChunkPool::unref(e.chunk);
  inflight_.clear();
  std::lock_guard lock(qmu_);
  while (!disco_q_.empty()) ChunkPool::unref(disco_q_.pop_front().chunk);
  while (!data_q_.empty()) ChunkPool::unref(data_q_.pop_front().chunk);
}

std::string ClientConn::peer_name() const {
  if (presence_.key.is_zero()) return remote_;
  return fmt::format("{} ({})", presence_.key.short_string(), remote_);
}

void ClientConn::schedule_locked(bool* need_post) {
  if (!writing_ && !flush_posted_) {
    flush_posted_ = true;
    *need_post = true;
  }
}

ClientConn::Enqueued ClientConn::enqueue_packet(const NodePublic& src, Chunk* chunk,
                                                const uint8_t* data, uint32_t len, bool disco,
                                                ClientConn* waiter) {
  bool need_post = false;
  bool first = false;
  Chunk* evicted = nullptr;
  uint32_t evicted_len = 0;
  {
    std::lock_guard lock(qmu_);
    if (closing_) {
      stats_.drop(DropReason::kGoneDisconnected, disco, len);
      return Enqueued::kQueued;
    }
    PacketRing& q = disco ? disco_q_ : data_q_;
    if (q.full()) {
      // Back-pressure: a queue that fills while its writer drains it (no write running means a
      // flush is already posted; a write running for less than queue_wait is progressing)
      // pauses the sender instead of losing the oldest packet. A writer stuck for longer is a
      // stalled reader: its senders must not wait on it, so derper's drop-oldest applies.
      if (waiter != nullptr && !disco &&
          (!writing_ || std::chrono::steady_clock::now() - batch_started_ < opts_.queue_wait)) {
        // Capacity is kept: a connection allocates the list once, at its first paused sender.
        queue_waiters_.push_back(waiter->weak_from_this());
        return Enqueued::kWait;
      }
      // derper drops the oldest so that a stalled reader gets the freshest packets.
      PacketEntry old = q.pop_front();
      evicted = old.chunk;
      evicted_len = old.len;
    }
    PacketEntry& e = q.push_back();
    ChunkPool::ref(chunk);
    e.chunk = chunk;
    e.data = data;
    e.len = len;
    write_frame_header(e.head.data(), FrameType::kRecvPacket, static_cast<uint32_t>(kKeyLen + len));
    std::memcpy(e.head.data() + kFrameHeaderLen, src.bytes.data(), kKeyLen);
    if (received_from_.find(src) == received_from_.end()) {
      received_from_.insert(src);
      first = true;
    }
    schedule_locked(&need_post);
  }
  if (evicted) {
    ChunkPool::unref(evicted);
    stats_.drop(DropReason::kQueueHead, disco, evicted_len);
  }
  if (need_post) post_flush();
  return first ? Enqueued::kFirst : Enqueued::kQueued;
}

void ClientConn::wake_queue_waiters_locked() {
  if (queue_waiters_.empty()) return;
  for (auto& w : queue_waiters_) {
    // The posted wake holds its own reference, so none is released under qmu_.
    if (auto sender = w.lock()) sender->wake_from_queue_wait();
  }
  queue_waiters_.clear();
}

bool ClientConn::queue_control(const Control& c, const NodePublic* owed_from) {
  bool need_post = false;
  {
    std::lock_guard lock(qmu_);
    if (closing_) return false;
    // A PeerGone for a departed source is owed only if we were handed packets from it.
    if (owed_from != nullptr && received_from_.erase(*owed_from) == 0) return false;
    control_.push_back(c);
    schedule_locked(&need_post);
  }
  if (need_post) post_flush();
  return true;
}

void ClientConn::enqueue_peer_gone_sent_from(const NodePublic& peer) {
  Control c;
  c.len = static_cast<uint8_t>(encode_peer_gone(c.bytes, peer, PeerGoneReason::kDisconnected));
  if (queue_control(c, &peer)) stats_.add(Counter::kPeerGoneDisconnectedFrames);
}

void ClientConn::enqueue_watch_gone(const NodePublic& peer) {
  Control c;
  c.len = static_cast<uint8_t>(encode_peer_gone(c.bytes, peer, PeerGoneReason::kDisconnected));
  if (queue_control(c, nullptr)) stats_.add(Counter::kPeerGoneDisconnectedFrames);
}

void ClientConn::enqueue_watch_present(const Presence& p) {
  Control c;
  c.len = static_cast<uint8_t>(
      opts_.peer_present_flags
          ? encode_peer_present(c.bytes, p.key, p.ip16, p.port, p.flags)
          : encode_peer_present_without_flags(c.bytes, p.key, p.ip16, p.port));
  queue_control(c, nullptr);
}

void ClientConn::send_health(std::string problem) {
  bool need_post = false;
  {
    std::lock_guard lock(qmu_);
    if (closing_) return;
    health_ = std::move(problem);
    health_pending_ = true;
    schedule_locked(&need_post);
  }
  if (need_post) post_flush();
}

void ClientConn::send_restarting(uint32_t reconnect_in_ms, uint32_t try_for_ms) {
  Control c;
  c.len = static_cast<uint8_t>(encode_restarting(c.bytes, reconnect_in_ms, try_for_ms));
  queue_control(c, nullptr);
}

bool ClientConn::write_idle() {
  std::lock_guard lock(qmu_);
  return closing_ || (!writing_ && !flush_posted_ && disco_q_.empty() && data_q_.empty() &&
                      control_.empty() && !pong_pending_ && !keep_alive_pending_ &&
                      !health_pending_ && preamble_.empty());
}

void ClientConn::set_preamble(std::vector<uint8_t> bytes) {
  bool need_post = false;
  {
    std::lock_guard lock(qmu_);
    preamble_ = std::move(bytes);
    schedule_locked(&need_post);
  }
  if (need_post) post_flush();
}

void ClientConn::queue_keep_alive() {
  bool need_post = false;
  {
    std::lock_guard lock(qmu_);
    if (closing_) return;
    keep_alive_pending_ = true;
    schedule_locked(&need_post);
  }
  if (need_post) post_flush();
}

bool ClientConn::begin_batch() {
  std::lock_guard lock(qmu_);
  flush_posted_ = false;
  if (writing_ || closing_) return false;
  bufs_.clear();
  if (!preamble_.empty()) {
    preamble_inflight_ = std::move(preamble_);
    preamble_.clear();
    bufs_.emplace_back(preamble_inflight_.data(), preamble_inflight_.size());
  }
  // Packets before control frames: a PeerGone(X) queued after a packet from X must not
  // overtake it.
  if ((!disco_q_.empty() || !data_q_.empty()) && inflight_.capacity() == 0) {
    // The first batch with packets: size the batch buffers once for the largest batch.
    inflight_.reserve(disco_q_.capacity() + data_q_.capacity());
    bufs_.reserve(bufs_capacity_);
  }
  for (PacketRing* q : {&disco_q_, &data_q_}) {
    while (!q->empty()) inflight_.push_back(q->pop_front());
  }
  wake_queue_waiters_locked();  // the queues have room again
  if (!control_.empty() && !control_inflight_) {
    control_inflight_ = std::make_unique<std::array<Control, kMaxControlPerBatch>>();
  }
  for (const PacketEntry& e : inflight_) {
    bufs_.emplace_back(e.head.data(), e.head.size());
    if (e.len > 0) bufs_.emplace_back(e.data, e.len);
  }
  while (!control_.empty() && control_inflight_n_ < kMaxControlPerBatch) {
    Control& c = (*control_inflight_)[control_inflight_n_++];
    c = control_.front();
    control_.pop_front();
    bufs_.emplace_back(c.bytes.data(), c.len);
  }
  if (pong_pending_) {
    encode_pong(pong_buf_, pong_data_);
    pong_pending_ = false;
    pong_inflight_ = true;
    bufs_.emplace_back(pong_buf_.data(), pong_buf_.size());
  }
  if (keep_alive_pending_) {
    keep_alive_pending_ = false;
    bufs_.emplace_back(keep_alive_buf_.data(), keep_alive_buf_.size());
  }
  if (health_pending_) {
    // Rare (operator action): allocating here is fine.
    health_pending_ = false;
    health_inflight_.resize(kFrameHeaderLen + health_.size());
    encode_health(health_inflight_, health_);
    bufs_.emplace_back(health_inflight_.data(), health_inflight_.size());
  }
  if (bufs_.empty()) return false;
  writing_ = true;
  batch_started_ = std::chrono::steady_clock::now();
  return true;
}

bool ClientConn::end_batch(bool ok) {
  int64_t bytes = 0;
  for (const PacketEntry& e : inflight_) {
    ChunkPool::unref(e.chunk);
    if (ok) {
      bytes += e.len;
    } else {
      const bool disco = looks_like_disco({e.data, e.len});
      stats_.drop(DropReason::kWriteError, disco, e.len);
    }
  }
  if (ok) {
    stats_.add(Counter::kPacketsSent, static_cast<int64_t>(inflight_.size()));
    stats_.add(Counter::kBytesSent, bytes);
    if (pong_inflight_) stats_.add(Counter::kSentPong);
  }
  inflight_.clear();
  control_inflight_n_ = 0;
  pong_inflight_ = false;
  if (!preamble_inflight_.empty()) std::vector<uint8_t>().swap(preamble_inflight_);

  std::lock_guard lock(qmu_);
  writing_ = false;
  return !closing_ && (!disco_q_.empty() || !data_q_.empty() || !control_.empty() ||
                       pong_pending_ || keep_alive_pending_ || health_pending_ ||
                       !preamble_.empty());
}

void ClientConn::shut_queues() {
  std::lock_guard lock(qmu_);
  if (closing_) return;
  closing_ = true;
  for (PacketRing* q : {&disco_q_, &data_q_}) {
    const bool disco = q == &disco_q_;
    while (!q->empty()) {
      PacketEntry e = q->pop_front();
      ChunkPool::unref(e.chunk);
      stats_.drop(DropReason::kGoneDisconnected, disco, e.len);
    }
  }
  control_.clear();
  pong_pending_ = false;
  keep_alive_pending_ = false;
  health_pending_ = false;
  received_from_.clear();
  wake_queue_waiters_locked();  // their packets now go nowhere: no reason to wait
}

void ClientConn::note_closed_preferred() {
  if (preferred_) {
    preferred_ = false;
    stats_.add(Counter::kGaugeHomeConnections, -1);
  }
}

size_t ClientConn::pending_frame_size(const uint8_t* data, size_t len) const {
  if (len < kFrameHeaderLen) return 0;
  return kFrameHeaderLen + read_frame_header(data).length;
}

Result<size_t> ClientConn::process_frames(Chunk* chunk, uint8_t* data, size_t len) {
  size_t off = 0;
  if (skip_remaining_ > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(skip_remaining_, len));
    skip_remaining_ -= n;
    off = n;
  }
  while (len - off >= kFrameHeaderLen) {
    const FrameHeader h = read_frame_header(data + off);
    const auto type = static_cast<FrameType>(h.type);
    // ForwardPacket's sender is checked before its payload is read (§2.4).
    if (type == FrameType::kForwardPacket && !mesh_) {
      stats_.add(Counter::kMeshFramesRefused);
      return Error(ErrorKind::kProtocol, "ForwardPacket from a client without the mesh key");
    }
    bool skip = false;
    if (auto ok = FrameReader::check_header(FrameReader::Role::kServer, h, &skip); !ok) {
      return std::move(ok).error();
    }
    if ((type == FrameType::kWatchConns || type == FrameType::kClosePeer) && !mesh_) {
      stats_.add(Counter::kMeshFramesRefused);
      return Error(ErrorKind::kProtocol,
                   fmt::format("{} from a client without the mesh key", frame_type_name(h.type)));
    }
    // A second ClientInfo is just another frame derper reads and discards.
    if (type == FrameType::kClientInfo) skip = true;
    if (opts_.client_rate_bytes_per_second > 0 && !mesh_ && !pay_for_frame(h.length)) break;

    if (dup.load(std::memory_order_relaxed) && !active.load(std::memory_order_relaxed)) {
      relay_.note_dup_activity(this);
    }
    const size_t avail = len - off - kFrameHeaderLen;
    if (skip) {
      head_paid_ = false;
      if (avail >= h.length) {
        off += kFrameHeaderLen + h.length;
      } else {
        skip_remaining_ = h.length - avail;
        off = len;
      }
      continue;
    }
    if (avail < h.length) break;  // kept frames are ≤ 64 KiB + 69: the chunk will hold it
    if (auto ok = handle_frame(chunk, h.type, data + off + kFrameHeaderLen, h.length); !ok) {
      return std::move(ok).error();
    }
    if (queue_blocked_) break;  // the frame stays (paid for) at the read position
    head_paid_ = false;
    off += kFrameHeaderLen + h.length;
  }
  return off;
}

bool ClientConn::pay_for_frame(uint32_t payload_len) {
  if (head_paid_) return true;
  // derper charges each frame's payload, clamped to the largest frame, before reading it.
  const double cost = static_cast<double>(std::min<int64_t>(payload_len, kMinRateBurst));
  const auto now = std::chrono::steady_clock::now();
  if (!rate_bucket_.try_take(cost, now)) {
    throttle_ = rate_bucket_.wait_for(cost, now);  // finite: cost ≤ kMinRateBurst ≤ the burst
    stats_.add(Counter::kRateLimitWaited);
    return false;
  }
  head_paid_ = true;
  return true;
}

Result<void> ClientConn::handle_frame(Chunk* chunk, uint8_t type, uint8_t* payload, uint32_t len) {
  switch (static_cast<FrameType>(type)) {
    case FrameType::kSendPacket: {
      const NodePublic dst = NodePublic::from_bytes(payload);
      const uint8_t* pkt = payload + kKeyLen;
      const uint32_t n = len - static_cast<uint32_t>(kKeyLen);
      const bool disco = looks_like_disco({pkt, n});
      // Counted before routing (whoever sees the packet arrive sees it counted), once even when
      // the frame waits for a full queue and is routed again.
      if (!frame_counted_) {
        stats_.add(Counter::kPacketsReceived);
        stats_.add(Counter::kBytesReceived, n);
        stats_.add(disco ? Counter::kPacketsReceivedDisco : Counter::kPacketsReceivedOther);
      }
      ClientConn* waiter =
          (opts_.queue_wait.count() > 0 && !force_enqueue_ && !mesh_) ? this : nullptr;
      const Relay::Routed r = relay_.route(presence_.key, dst, chunk, pkt, n, disco, false, waiter);
      if (r == Relay::Routed::kWait) {
        queue_blocked_ = true;
        frame_counted_ = true;
        stats_.add(Counter::kQueueWaits);
        return {};
      }
      frame_counted_ = false;
      force_enqueue_ = false;
      if (r == Relay::Routed::kUnknown && disco) maybe_send_not_here(dst);
      return {};
    }
    case FrameType::kForwardPacket: {
      const NodePublic src = NodePublic::from_bytes(payload);
      const NodePublic dst = NodePublic::from_bytes(payload + kKeyLen);
      const uint8_t* pkt = payload + 2 * kKeyLen;
      const uint32_t n = len - static_cast<uint32_t>(2 * kKeyLen);
      const bool disco = looks_like_disco({pkt, n});
      stats_.add(Counter::kPacketsForwardedIn);
      stats_.add(Counter::kPacketsReceived);
      stats_.add(Counter::kBytesReceived, n);
      stats_.add(disco ? Counter::kPacketsReceivedDisco : Counter::kPacketsReceivedOther);
      if (relay_.route(src, dst, chunk, pkt, n, disco, true) == Relay::Routed::kUnknown && disco) {
        maybe_send_not_here(dst);
      }
      return {};
    }
    case FrameType::kNotePreferred:
      handle_note_preferred(payload[0] != 0);
      return {};
    case FrameType::kWatchConns:
      // A derper meshing with itself would watch its own clients: ignore.
      if (presence_.key != opts_.private_key.public_key()) {
        relay_.add_watcher(shared_from_this());
      }
      return {};
    case FrameType::kClosePeer: {
      const NodePublic target = NodePublic::from_bytes(payload);
      if (!relay_.close_peer(target) && opts_.log) {
        opts_.log(
            fmt::format("ClosePeer from {}: {} is not connected", peer_name(), target.to_string()));
      }
      return {};
    }
    case FrameType::kPing:
      handle_ping(payload);
      return {};
    default:
      return {};
  }
}

void ClientConn::handle_ping(const uint8_t* payload) {
  stats_.add(Counter::kGotPing);
  bool need_post = false;
  {
    std::lock_guard lock(qmu_);
    if (closing_ || pong_pending_) return;  // one pending pong; extra pings are ignored
    pong_pending_ = true;
    std::memcpy(pong_data_.data(), payload, pong_data_.size());
    schedule_locked(&need_post);
  }
  if (need_post) post_flush();
}

void ClientConn::handle_note_preferred(bool preferred) {
  if (preferred == preferred_) return;
  preferred_ = preferred;
  stats_.add(Counter::kGaugeHomeConnections, preferred ? 1 : -1);
  // Moves right after connecting are initial state, not clients changing home.
  if (std::chrono::steady_clock::now() - accepted_at_ > std::chrono::seconds(5)) {
    stats_.add(preferred ? Counter::kHomeMovesIn : Counter::kHomeMovesOut);
  }
}

void ClientConn::maybe_send_not_here(const NodePublic& dst) {
  // derper's per-connection limiter: burst 3, one a second.
  if (!not_here_bucket_.try_take(1, std::chrono::steady_clock::now())) return;
  Control c;
  c.len = static_cast<uint8_t>(encode_peer_gone(c.bytes, dst, PeerGoneReason::kNotHere));
  if (queue_control(c, nullptr)) stats_.add(Counter::kPeerGoneNotHereFrames);
}

}  // namespace derp::server
