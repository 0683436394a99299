// A relay connection without a stream, for socket-free tests of the relay core (nghttp2-style):
// frames go in as bytes (`feed`), and what the connection's writer would write comes out as
// frames (`written`). The relay's routing, queues, PeerGone, dup-client policy, watchers and
// back-pressure run exactly as in the server; only the stream layer is missing.
#pragma once

#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "derp/frame.h"
#include "derp/key.h"
#include "derp/result.h"
#include "derp/server.h"
#include "server/chunk_pool.h"
#include "server/client_conn.h"
#include "server/relay.h"
#include "server/stats.h"

namespace derp::test {

// The relay's shared services, as one server holds them.
struct RelayCore {
  explicit RelayCore(ServerOptions o) : opts(std::move(o)), relay(opts, stats) {}
  ServerOptions opts;
  server::Stats stats;
  server::ChunkPool pool;
  server::Relay relay;
  int64_t counter(server::Counter c) const { return stats.get(c); }
};

// One frame the writer would have written (payload copied).
struct WrittenFrame {
  FrameType type;
  std::vector<uint8_t> payload;
};

class FakePeer final : public server::ClientConn {
 public:
  FakePeer(RelayCore& core, const NodePublic& key, bool mesh = false)
      : ClientConn(core.relay, core.stats, core.pool, core.opts), core_(core) {
    server::Presence p;
    p.key = key;
    set_identity(p, mesh);
    remote_ = "fake";
  }

  // Joins the relay (what a good ClientInfo does).
  void join() { core_.relay.register_client(shared_from_this()); }
  // Leaves it (what the end of the connection does).
  void leave() {
    shut_queues();
    core_.relay.unregister_client(this);
  }

  // The bytes arrive in one read. Returns the bytes consumed, or the error that closes.
  Result<size_t> feed(std::span<const uint8_t> bytes) {
    if (bytes.size() > server::ChunkPool::kChunkSize) {
      return Error(ErrorKind::kUsage, "FakePeer::feed: more than one read chunk");
    }
    server::Chunk* c = core_.pool.acquire();
    std::memcpy(c->data(), bytes.data(), bytes.size());
    auto r = process_frames(c, c->data(), bytes.size());
    server::ChunkPool::unref(c);  // queued packets hold their own references
    return r;
  }
  Result<size_t> feed(const std::vector<uint8_t>& bytes) { return feed(std::span(bytes)); }

  // Runs the writer until nothing is queued: every batch it would write, as frames.
  std::vector<WrittenFrame> written() {
    std::vector<WrittenFrame> out;
    std::vector<uint8_t> bytes;
    while (begin_batch()) {
      for (const auto& b : batch_buffers()) {
        const auto* p = static_cast<const uint8_t*>(b.data());
        bytes.insert(bytes.end(), p, p + b.size());
      }
      end_batch(true);
    }
    FrameReader reader(FrameReader::Role::kClient);
    std::span<const uint8_t> in(bytes);
    for (;;) {
      auto f = reader.next(in);
      if (!f || !*f) break;
      out.push_back({(*f)->frame_type(), {(*f)->payload.begin(), (*f)->payload.end()}});
    }
    return out;
  }

  using ClientConn::force_next_enqueue;
  using ClientConn::take_queue_blocked;

  int flush_posts = 0;
  int wakes = 0;
  int resumes = 0;
  bool closed = false;
  std::string close_why;

 private:
  void post_flush() override { ++flush_posts; }
  void wake_from_queue_wait() override { ++wakes; }
  void close_async(std::string why, server::CloseCode) override {
    closed = true;
    close_why = std::move(why);
  }
  void resume_reads_async() override { ++resumes; }

  RelayCore& core_;
};

}  // namespace derp::test
