// One registered DERP connection as the relay core sees it: identity, the two bounded packet
// queues of PROTOCOL.md §4.3, pending control frames, and the frame dispatcher for what the
// client sends. The byte stream itself (TCP now; TLS / WebSocket later) lives in the derived
// Connection<Stream> (connection.h), which only moves bytes.
#pragma once

#include <array>
#include <atomic>
#include <boost/asio/buffer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "codec/token_bucket.h"
#include "derp/frame.h"
#include "derp/key.h"
#include "derp/result.h"
#include "derp/server.h"
#include "server/chunk_pool.h"
#include "server/stats.h"

namespace derp::server {

class Relay;

// The receive token bucket never holds less than one largest frame (64 KiB + 32), as derper.
inline constexpr int64_t kMinRateBurst = 65536 + 32;
// The bucket's effective burst for these options.
int64_t rate_burst(const ServerOptions& opts);

// A RecvPacket waiting for the destination's writer: the 37-byte frame head (type, length,
// source key) inline, the payload still in the sender's read chunk.
struct PacketEntry {
  Chunk* chunk = nullptr;  // holds one reference
  const uint8_t* data = nullptr;
  uint32_t len = 0;
  std::array<uint8_t, kFrameHeaderLen + kKeyLen> head{};
};

// Fixed-capacity FIFO. The slots are allocated on the first push, not up front: most of a big
// relay's connections are idle, and an idle connection should cost no queue memory (issue 8).
class PacketRing {
 public:
  explicit PacketRing(size_t capacity) : capacity_(capacity) {}
  bool empty() const { return size_ == 0; }
  bool full() const { return size_ == capacity_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  PacketEntry& push_back() {
    if (!slots_) slots_ = std::make_unique<PacketEntry[]>(capacity_);  // once per connection
    PacketEntry& e = slots_[(head_ + size_) % capacity_];
    ++size_;
    return e;
  }
  PacketEntry pop_front() {
    PacketEntry e = slots_[head_];
    head_ = (head_ + 1) % capacity_;
    --size_;
    return e;
  }

 private:
  std::unique_ptr<PacketEntry[]> slots_;
  size_t capacity_;
  size_t head_ = 0;
  size_t size_ = 0;
};

// WebSocket close codes the relay sends when it ends a connection (RFC 6455 §7.4.1).
enum class CloseCode : uint16_t {
  kNormal = 1000,     // closed on purpose (ClosePeer, close= fault)
  kGoingAway = 1001,  // the relay is shutting down
  kProtocol = 1002,   // the client broke the DERP protocol
  kPolicy = 1008,     // refused (allow-keys, admission URL, handshake timeout)
};

// What watchers learn about a connection (PeerPresent).
struct Presence {
  NodePublic key;
  std::array<uint8_t, 16> ip16{};
  uint16_t port = 0;
  uint8_t flags = peer_present_flags::kIsRegular;
};

class ClientConn : public std::enable_shared_from_this<ClientConn> {
 public:
  ClientConn(Relay& relay, Stats& stats, ChunkPool& pool, const ServerOptions& opts);
  virtual ~ClientConn();
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  // ---- Called from any thread.

  // What enqueue_packet did.
  enum class Enqueued : uint8_t {
    kQueued,  // queued (perhaps by dropping the oldest)
    kFirst,   // queued, and the first packet from `src` since its last PeerGone here (the relay
              // then remembers the pair)
    kWait,    // nothing queued: the data queue is full but draining; `waiter` is woken
              // (wake_from_queue_wait) when it has room (ServerOptions::queue_wait)
  };
  // Queues a RecvPacket from `src` (§4.3 drop policy). `waiter`: the sending connection when
  // it may be paused instead of dropping (back-pressure); nullptr = drop the oldest when full.
  Enqueued enqueue_packet(const NodePublic& src, Chunk* chunk, const uint8_t* data, uint32_t len,
                          bool disco, ClientConn* waiter = nullptr);
  // A destination this connection waits for has room again: retry the frame it stopped at,
  // on this connection's own loop.
  virtual void wake_from_queue_wait() = 0;
  // PeerGone(Disconnected) for a key this connection was handed packets from.
  void enqueue_peer_gone_sent_from(const NodePublic& peer);
  // PeerGone / PeerPresent for a watcher.
  void enqueue_watch_gone(const NodePublic& peer);
  void enqueue_watch_present(const Presence& p);
  // Health (empty = healthy) and ServerRestarting frames (PROTOCOL.md §4.9). A later Health
  // replaces one not yet written.
  void send_health(std::string problem);
  void send_restarting(uint32_t reconnect_in_ms, uint32_t try_for_ms);
  // True when nothing is queued or being written (graceful shutdown waits for it).
  bool write_idle();
  // Closes the connection on its own loop. A WebSocket client first gets a close frame with
  // `code` (RFC 6455 §7.4); plain TCP and TLS clients see the stream end.
  virtual void close_async(std::string why, CloseCode code = CloseCode::kNormal) = 0;
  // Fault injection: clears stall_reads and, on the connection's own loop, starts reading
  // again if the reader had stopped for it.
  virtual void resume_reads_async() = 0;

  const NodePublic& key() const { return presence_.key; }
  const Presence& presence() const { return presence_; }
  bool is_mesh() const { return mesh_; }
  uint64_t id() const { return id_; }
  std::string peer_name() const;  // "nodekey:… from 1.2.3.4:5678" for logs

  // Duplicate-client state, written by the relay under its lock.
  std::atomic<bool> dup{false};
  std::atomic<bool> active{false};
  bool registered = false;  // relay lock
  bool watcher = false;     // relay lock
  // Fault injection: the reader stops reading from this connection until resume_reads_async().
  std::atomic<bool> stall_reads{false};

 protected:
  // ---- Used by the derived stream class, on the connection's own loop.

  // Schedules flush() on the connection's loop (called with qmu_ released).
  virtual void post_flush() = 0;

  // Parses and acts on every whole frame in [data, data+len) of `chunk`. Returns the bytes
  // consumed (a partial frame at the end is left), or the error that must close the connection.
  Result<size_t> process_frames(Chunk* chunk, uint8_t* data, size_t len);
  // Bytes the frame starting at `data` needs in total, when known (0 = header incomplete).
  size_t pending_frame_size(const uint8_t* data, size_t len) const;

  // Collects everything queued into bufs_ (one gathered write). False when nothing is queued
  // or a write is already running.
  bool begin_batch();
  // Releases what the finished write held; true when more is queued (write again).
  bool end_batch(bool ok);
  // Marks the connection closing: later packets are dropped, queued ones counted as
  // gone_disconnected. Idempotent.
  void shut_queues();

  void set_identity(const Presence& p, bool mesh) { presence_ = p, mesh_ = mesh; }
  void set_preamble(std::vector<uint8_t> bytes);  // ServerInfo: goes out before anything else
  void queue_keep_alive();
  void note_closed_preferred();

  const std::vector<boost::asio::const_buffer>& batch_buffers() const { return bufs_; }

  // After process_frames() stopped at a packet whose destination queue was full and draining:
  // true once (the reader parks until wake_from_queue_wait() or queue_wait passes).
  bool take_queue_blocked() {
    const bool b = queue_blocked_;
    queue_blocked_ = false;
    return b;
  }
  // queue_wait passed without room: the frame the reader stopped at is queued anyway, dropping
  // the destination's oldest packet.
  void force_next_enqueue() { force_enqueue_ = true; }

  // Receive token bucket: after process_frames() stopped early for want of tokens, how long to
  // wait before calling it again (zero when it did not). Resets on read.
  std::chrono::nanoseconds take_throttle() {
    const auto t = throttle_;
    throttle_ = {};
    return t;
  }

  Relay& relay_;
  Stats& stats_;
  ChunkPool& pool_;
  const ServerOptions& opts_;
  std::chrono::steady_clock::time_point accepted_at_ = std::chrono::steady_clock::now();
  std::string remote_;  // "ip:port" for logs

 private:
  struct Control {
    uint8_t len = 0;
    std::array<uint8_t, kFrameHeaderLen + kPeerPresentLen> bytes{};
  };
  static constexpr size_t kMaxControlPerBatch = 64;
  static constexpr size_t kSmallBatch = 8;  // buffers reserved before the first packet

  // Queues a control frame and schedules a flush, unless the connection is closing or (with
  // `owed_from`) no packet from that key was delivered here. True when queued.
  bool queue_control(const Control& c, const NodePublic* owed_from);
  void schedule_locked(bool* need_post);
  void wake_queue_waiters_locked();
  Result<void> handle_frame(Chunk* chunk, uint8_t type, uint8_t* payload, uint32_t len);
  void handle_ping(const uint8_t* payload);
  void handle_note_preferred(bool preferred);
  void maybe_send_not_here(const NodePublic& dst);

  Presence presence_;
  bool mesh_ = false;
  uint64_t id_;

  // Reader state (own loop only).
  // Charges the frame at the read position to the receive token bucket; false when the reader
  // must wait (throttle_ set).
  bool pay_for_frame(uint32_t payload_len);
  uint64_t skip_remaining_ = 0;
  TokenBucket rate_bucket_{0, 0, {}};  // receive token bucket (ServerOptions::client_rate_*)
  bool head_paid_ = false;  // the frame at the read position is already charged
  std::chrono::nanoseconds throttle_{};
  bool preferred_ = false;
  // Back-pressure (own loop): the frame at the read position waits for a full queue; it was
  // already counted as received; the next try must not wait again.
  bool queue_blocked_ = false;
  bool frame_counted_ = false;
  bool force_enqueue_ = false;
  TokenBucket not_here_bucket_{0, 0, {}};  // PeerGone NotHere: burst 3, one a second (derper)

  // Queues, shared with senders on other loops.
  std::mutex qmu_;
  bool closing_ = false;
  bool writing_ = false;
  bool flush_posted_ = false;
  PacketRing disco_q_;
  PacketRing data_q_;
  // Control frames waiting for the writer, FIFO. A vector read from `head`, not a std::deque:
  // libstdc++'s deque allocates ~600 bytes when constructed, and most connections never
  // queue a control frame (issue 8: memory per idle connection).
  struct ControlQueue {
    std::vector<Control> items;
    size_t head = 0;
    bool empty() const { return head == items.size(); }
    void push_back(const Control& c) { items.push_back(c); }
    const Control& front() const { return items[head]; }
    void pop_front() {
      if (++head == items.size()) {
        clear();
      } else if (head >= 64 && 2 * head >= items.size()) {
        // A long backlog (a watcher of a big relay): drop the consumed prefix now and then.
        items.erase(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(head));
        head = 0;
      }
    }
    void clear() {
      items.clear();  // keeps the capacity: a connection that queued control frames will again
      head = 0;
    }
  };
  ControlQueue control_;
  bool pong_pending_ = false;
  PingData pong_data_{};
  bool keep_alive_pending_ = false;
  bool health_pending_ = false;
  std::string health_;
  std::vector<uint8_t> health_inflight_;
  std::vector<uint8_t> preamble_;
  std::unordered_set<NodePublic> received_from_;
  // Senders paused on this connection's full data queue, woken when a batch takes it.
  std::vector<std::weak_ptr<ClientConn>> queue_waiters_;
  std::chrono::steady_clock::time_point batch_started_{};  // of the write in progress

  // The batch being written (own loop only). Sized when first needed — the packet buffers on
  // the first batch with packets, the control slots on the first with control frames — and
  // kept: an idle connection holds none of it, a busy one never reallocates.
  std::vector<PacketEntry> inflight_;
  std::unique_ptr<std::array<Control, kMaxControlPerBatch>> control_inflight_;
  size_t control_inflight_n_ = 0;
  std::array<uint8_t, kFrameHeaderLen + 8> pong_buf_{};
  bool pong_inflight_ = false;
  std::array<uint8_t, kFrameHeaderLen> keep_alive_buf_{};
  std::vector<uint8_t> preamble_inflight_;
  std::vector<boost::asio::const_buffer> bufs_;
  size_t bufs_capacity_ = 0;
};

}  // namespace derp::server
