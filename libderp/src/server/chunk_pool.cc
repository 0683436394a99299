#include "server/chunk_pool.h"

#include <new>

namespace derp::server {

ChunkPool::ChunkPool(size_t max_free) : max_free_(max_free) { free_.reserve(max_free_); }

ChunkPool::~ChunkPool() {
  for (Chunk* c : free_) {
    c->~Chunk();
    ::operator delete(c);
  }
}

Chunk* ChunkPool::acquire() {
  Chunk* c = nullptr;
  {
    std::lock_guard lock(mu_);
    if (!free_.empty()) {
      c = free_.back();
      free_.pop_back();
    }
  }
  if (c == nullptr) {
    c = new (::operator new(sizeof(Chunk) + kChunkSize)) Chunk();
    c->pool = this;
    allocated_.fetch_add(1, std::memory_order_relaxed);
  }
  c->refs.store(1, std::memory_order_relaxed);
  return c;
}

void ChunkPool::give_back(Chunk* c) {
  {
    std::lock_guard lock(mu_);
    if (free_.size() < max_free_) {
      free_.push_back(c);
      return;
    }
  }
  allocated_.fetch_sub(1, std::memory_order_relaxed);
  c->~Chunk();
  ::operator delete(c);
}

}  // namespace derp::server
