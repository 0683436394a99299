// Reference-counted read buffers shared between a reader and the queues it fills.
//
// A connection reads into a chunk; every SendPacket it parses becomes a queue entry in the
// destination that points into the same chunk and holds one reference, so a packet is never
// copied between the socket read and the gathered socket write. Chunks come back to the pool
// when the last reference goes, so steady-state relaying does not touch the heap.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace derp::server {

class ChunkPool;

struct Chunk {
  std::atomic<int32_t> refs{0};
  ChunkPool* pool = nullptr;

  uint8_t* data() { return reinterpret_cast<uint8_t*>(this + 1); }
};

class ChunkPool {
 public:
  // ≥ two of the largest frame a client may send (ForwardPacket: 5 + 64 + 64 KiB), so a reader
  // holding a partial frame always has room for a whole next one.
  static constexpr size_t kChunkSize = 128 * 1024;

  explicit ChunkPool(size_t max_free = 4096);
  ~ChunkPool();
  ChunkPool(const ChunkPool&) = delete;
  ChunkPool& operator=(const ChunkPool&) = delete;

  // A chunk holding one reference (the caller's).
  Chunk* acquire();

  static void ref(Chunk* c) { c->refs.fetch_add(1, std::memory_order_relaxed); }
  static void unref(Chunk* c) {
    if (c->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) c->pool->give_back(c);
  }
  // True when the caller's reference is the only one (nobody else reads the bytes).
  static bool unique(const Chunk* c) { return c->refs.load(std::memory_order_acquire) == 1; }

  // Chunks currently allocated (in use or free), for tests and metrics.
  size_t allocated() const { return allocated_.load(std::memory_order_relaxed); }

 private:
  void give_back(Chunk* c);

  std::mutex mu_;
  std::vector<Chunk*> free_;  // reserved once: give_back never allocates
  size_t max_free_;
  std::atomic<size_t> allocated_{0};
};

}  // namespace derp::server
