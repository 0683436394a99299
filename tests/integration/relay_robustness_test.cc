// Bad input, deadlines and slow readers: each must end only the offending connection.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/server.h"
#include "support/relay_harness.h"

// GCC pairs our operator new with free() and warns; the pair is correct by construction.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

// Counts every allocation in this test binary (used by the no-allocation test only).
namespace {
std::atomic<uint64_t> g_allocations{0};
}
void* operator new(size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace derp::test {
namespace {

class RelayRobustness : public ::testing::Test {
 protected:
  void start(ServerOptions o = {}) {
    o.log = logs_.sink();
    server_ = start_relay(std::move(o));
    ASSERT_TRUE(server_);
  }
  // One event loop, so a read carrying many packets routes them all before any flush runs,
  // and the given back-pressure bound (ServerOptions::queue_wait).
  void start_one_loop(std::chrono::milliseconds queue_wait,
                      std::chrono::milliseconds write_timeout = std::chrono::seconds(2)) {
    ServerOptions o;
    o.threads = 1;
    o.queue_wait = queue_wait;
    o.write_timeout = write_timeout;
    start(std::move(o));
  }
  std::unique_ptr<DerpConn> join(const NodePrivate& k) {
    return DerpConn::connect(server_->port(), k, server_->public_key());
  }
  // A fresh pair still relays (the relay kept serving others).
  void expect_pair_works() {
    NodePrivate ka = NodePrivate::generate(), kb = NodePrivate::generate();
    auto a = join(ka), b = join(kb);
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(a->send_packet(kb.public_key(), std::vector<uint8_t>{42}));
    auto f = b->read_frame();
    ASSERT_TRUE(f.has_value());
    EXPECT_EQ(f->frame_type(), FrameType::kRecvPacket);
  }
  // Opens an upgraded connection and reads the 101 + ServerKey, leaving the handshake open.
  std::unique_ptr<RawConn> upgraded() {
    auto raw = std::make_unique<RawConn>(server_->port());
    EXPECT_TRUE(raw->write("GET /derp HTTP/1.1\r\nHost: x\r\nUpgrade: DERP\r\n\r\n"));
    auto head = raw->read_http_head();
    EXPECT_TRUE(head.has_value());
    EXPECT_TRUE(raw->read_exact(45).has_value());
    return raw;
  }

  LogWatch logs_;
  std::unique_ptr<Server> server_;
};

TEST_F(RelayRobustness, MalformedHttpGets400AndTheRelayKeepsServing) {
  start();
  RawConn raw(server_->port());
  ASSERT_TRUE(raw.write("THIS IS NOT HTTP\r\n\r\n"));
  auto res = raw.read_http_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << *res;
  EXPECT_TRUE(raw.wait_closed());
  EXPECT_TRUE(logs_.wait_for("malformed HTTP request"));
  expect_pair_works();
}

TEST_F(RelayRobustness, GarbageAfterTheUpgradeClosesOnlyThatConnection) {
  start();
  auto raw = upgraded();
  ASSERT_TRUE(raw->write("\xff\xff\xff\xff\xff garbage garbage"));
  EXPECT_TRUE(raw->wait_closed());
  EXPECT_TRUE(logs_.wait_for("not ClientInfo")) << logs_.all();
  expect_pair_works();
}

TEST_F(RelayRobustness, FirstFrameOtherThanClientInfoIsRefused) {
  start();
  auto raw = upgraded();
  const PingData ping{};
  ASSERT_TRUE(raw->write(frame_bytes(FrameType::kPing, ping)));
  EXPECT_TRUE(raw->wait_closed());
  EXPECT_TRUE(logs_.wait_for("first frame is Ping, not ClientInfo")) << logs_.all();
  expect_pair_works();
}

TEST_F(RelayRobustness, ClientInfoSealedToTheWrongKeyIsRefused) {
  start();
  auto raw = upgraded();
  const NodePublic wrong = NodePrivate::generate().public_key();
  ASSERT_TRUE(raw->write(encode_client_info_frame(NodePrivate::generate(), wrong, ClientInfo{})));
  EXPECT_TRUE(raw->wait_closed());
  EXPECT_TRUE(logs_.wait_for("bad ClientInfo")) << logs_.all();
  expect_pair_works();
}

TEST_F(RelayRobustness, OversizeFrameClosesOnlyItsConnection) {
  start();
  NodePrivate k = NodePrivate::generate();
  auto c = join(k);
  ASSERT_TRUE(c);
  // A Ping longer than 1000 bytes breaks §2.4's limit.
  ASSERT_TRUE(c->send_frame(FrameType::kPing, std::vector<uint8_t>(1001)));
  EXPECT_TRUE(c->raw().wait_closed());
  expect_pair_works();
}

TEST_F(RelayRobustness, UnknownFramesOfAnyLengthAreSkipped) {
  start();
  auto c = join(NodePrivate::generate());
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->send_frame(static_cast<FrameType>(0x0b), std::vector<uint8_t>(300000, 1)));
  ASSERT_TRUE(c->send_frame(FrameType::kPong, std::vector<uint8_t>(8)));
  auto before = c->sync();
  ASSERT_TRUE(before.has_value());
  EXPECT_TRUE(before->empty());
}

TEST_F(RelayRobustness, HandshakeTimeoutClosesSilentConnections) {
  ServerOptions o;
  o.handshake_timeout = std::chrono::milliseconds(100);
  start(o);
  RawConn idle_http(server_->port());
  auto idle_derp = upgraded();
  EXPECT_TRUE(idle_http.wait_closed());
  EXPECT_TRUE(idle_derp->wait_closed());
  EXPECT_TRUE(logs_.wait_for("handshake timeout"));
}

TEST_F(RelayRobustness, SlowReaderDoesNotSlowOthersAndIsClosedAfterWriteTimeout) {
  ServerOptions o;
  o.write_timeout = std::chrono::milliseconds(300);
  o.threads = 2;
  start(o);
  NodePrivate ka = NodePrivate::generate(), kb = NodePrivate::generate(),
              kc = NodePrivate::generate(), kd = NodePrivate::generate();
  auto a = join(ka), b = join(kb), c = join(kc), d = join(kd);
  ASSERT_TRUE(a && b && c && d);
  c->raw().shrink_receive_buffer(4096);
  // C never reads. 400 × 64 KiB is far more than the socket buffers and C's two queues.
  const std::vector<uint8_t> big(65536, 0x11);
  for (int i = 0; i < 400; ++i) ASSERT_TRUE(a->send_packet(kc.public_key(), big));
  // Meanwhile B gets every one of D's packets, in order (in rounds of 20, under B's queue
  // depth: a faster sender would rightly see queue_head drops at B too).
  for (uint32_t round = 0; round < 10; ++round) {
    for (uint32_t i = round * 20; i < round * 20 + 20; ++i) {
      std::vector<uint8_t> p(4);
      std::memcpy(p.data(), &i, 4);
      ASSERT_TRUE(d->send_packet(kb.public_key(), p));
    }
    for (uint32_t i = round * 20; i < round * 20 + 20; ++i) {
      auto f = b->read_frame();
      ASSERT_TRUE(f.has_value()) << "packet " << i;
      auto v = decode_recv_packet(f->payload);
      ASSERT_TRUE(v.ok());
      uint32_t got = 0;
      std::memcpy(&got, v->data.data(), 4);
      ASSERT_EQ(got, i);
    }
  }
  ASSERT_TRUE(a->sync());
  EXPECT_GT(server_->counters()["packets_dropped_reason_queue_head"], 0);
  EXPECT_TRUE(logs_.wait_for("write timeout")) << logs_.all();
  EXPECT_TRUE(c->raw().wait_closed());
  EXPECT_GE(server_->counters()["sclient_write_timeouts"], 1);
}

// derper's privilegedWriteTimeout: a stalled mesh peer outlives an ordinary stalled reader.
// M (mesh key) stops reading first; C (ordinary) stops reading after the relay has routed all
// of M's flood, so by the time C is closed for its 200 ms, M's write has been stuck longer.
TEST_F(RelayRobustness, MeshPeerStallsPastTheOrdinaryWriteTimeout) {
  ServerOptions o;
  o.write_timeout = std::chrono::milliseconds(200);
  o.mesh_write_timeout = std::chrono::minutes(1);
  o.queue_wait = std::chrono::milliseconds(0);
  o.mesh_key = *MeshKey::parse(std::string(64, 'd'));
  // Off: Linux aborts a connection whose window stays shut past TCP_USER_TIMEOUT (15 s by
  // default), which on a loaded machine could end M before the test lets it read.
  o.tcp_user_timeout = std::chrono::milliseconds(0);
  o.threads = 2;
  start(o);
  NodePrivate ka = NodePrivate::generate(), kb = NodePrivate::generate(),
              km = NodePrivate::generate(), kc = NodePrivate::generate();
  auto a = join(ka), b = join(kb), c = join(kc);
  DerpConn::Options mesh_opts;
  mesh_opts.mesh_key = o.mesh_key;
  auto m = DerpConn::connect(server_->port(), km, server_->public_key(), mesh_opts);
  ASSERT_TRUE(a && b && c && m);
  // M keeps its normal buffer: with a tiny one, reading later would crawl (its window would
  // reopen by less than a segment at a time). 400 x 64 KiB is far more than the socket
  // buffers (a few MB) and the two queues either way.
  c->raw().shrink_receive_buffer(4096);
  const std::vector<uint8_t> big(65536, 0x22);
  for (int i = 0; i < 400; ++i) ASSERT_TRUE(a->send_packet(km.public_key(), big));
  ASSERT_TRUE(a->sync());  // every packet routed: M's write is stuck
  EXPECT_GT(server_->counters()["packets_dropped_reason_queue_head"], 0);
  for (int i = 0; i < 400; ++i) ASSERT_TRUE(b->send_packet(kc.public_key(), big));
  EXPECT_TRUE(c->raw().wait_closed()) << logs_.all();
  EXPECT_EQ(server_->counters()["sclient_write_timeouts"], 1) << logs_.all();
  // M is still connected: it reads its backlog and then its own Pong.
  auto frames = m->sync();
  ASSERT_TRUE(frames.has_value()) << logs_.all();
  EXPECT_FALSE(frames->empty());
  EXPECT_EQ(server_->counters()["sclient_write_timeouts"], 1);
}

// `count` SendPacket frames to `dst`, `size` bytes each, the first 4 bytes the sequence number.
std::vector<uint8_t> robustness_flood(const NodePublic& dst, uint32_t count, size_t size) {
  std::vector<uint8_t> out;
  for (uint32_t i = 0; i < count; ++i) {
    std::vector<uint8_t> p(dst.bytes.begin(), dst.bytes.end());
    p.resize(32 + size, 0x5a);
    std::memcpy(p.data() + 32, &i, 4);
    auto f = frame_bytes(FrameType::kSendPacket, p);
    out.insert(out.end(), f.begin(), f.end());
  }
  return out;
}

// Reads `count` RecvPackets and checks they carry sequence numbers first, first+1, ...
void robustness_expect_in_order(DerpConn& c, uint32_t first, uint32_t count) {
  for (uint32_t i = first; i < first + count; ++i) {
    auto f = c.read_frame();
    ASSERT_TRUE(f.has_value()) << "packet " << i;
    ASSERT_EQ(f->frame_type(), FrameType::kRecvPacket);
    auto v = decode_recv_packet(f->payload);
    ASSERT_TRUE(v.ok());
    uint32_t got = 0;
    std::memcpy(&got, v->data.data(), 4);
    ASSERT_EQ(got, i);
  }
}

// Back-pressure (ServerOptions::queue_wait): a receiver that reads, only slower than its sender
// writes, pauses the sender instead of losing packets (derper drops the oldest here).
TEST_F(RelayRobustness, FullQueueOfDrainingReceiverPausesTheSenderInsteadOfDropping) {
  start_one_loop(std::chrono::seconds(30));  // B never counts as stalled within the test
  NodePrivate ka = NodePrivate::generate(), kb = NodePrivate::generate();
  auto a = join(ka), b = join(kb);
  ASSERT_TRUE(a && b);
  constexpr uint32_t kCount = 3000;  // 3.7 MB written at once: reads of ~50-100 packets
  const auto flood = robustness_flood(kb.public_key(), kCount, 1200);
  bool written = false;
  std::thread sender([&] { written = a->raw().write(flood); });
  robustness_expect_in_order(*b, 0, kCount);
  sender.join();
  EXPECT_TRUE(written);
  auto c = server_->counters();
  EXPECT_EQ(c["packets_dropped_reason_queue_head"], 0);
  EXPECT_EQ(c["packets_dropped"], 0);
  EXPECT_GT(c["send_queue_waits"], 0);
}

// With queue_wait 0 the relay is derper: the same flood finds B's queue full and drops.
TEST_F(RelayRobustness, QueueWaitZeroDropsTheOldestAsDerper) {
  start_one_loop(std::chrono::milliseconds(0));
  NodePrivate ka = NodePrivate::generate(), kb = NodePrivate::generate();
  auto a = join(ka), b = join(kb);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->raw().write(robustness_flood(kb.public_key(), 3000, 1200)));
  ASSERT_TRUE(a->sync());  // the relay has read (and routed) all of A's frames
  auto c = server_->counters();
  EXPECT_GT(c["packets_dropped_reason_queue_head"], 0);
  EXPECT_EQ(c["send_queue_waits"], 0);
}

// A stalled receiver (it never reads) holds its sender back for at most one queue_wait at a
// time: then the relay drops the oldest of the stalled queue, and the sender's packets to others
// keep flowing.
TEST_F(RelayRobustness, StalledReceiverDoesNotHoldItsSenderBack) {
  // No write timeout: C stays connected, stalled, all along.
  start_one_loop(std::chrono::milliseconds(100), std::chrono::milliseconds(0));
  NodePrivate ka = NodePrivate::generate(), kb = NodePrivate::generate(),
              kc = NodePrivate::generate();
  auto a = join(ka), b = join(kb), c = join(kc);
  ASSERT_TRUE(a && b && c);
  c->raw().shrink_receive_buffer(4096);
  // A alternates: a big packet for C (who never reads), then a small one for B. 600 × 16 KiB
  // is far more than C's socket buffers and queue; B must still get all of A's packets.
  const std::vector<uint8_t> big(16384, 0x22);
  constexpr uint32_t kRounds = 600;
  bool written = true;
  std::thread sender([&] {
    for (uint32_t i = 0; i < kRounds && written; ++i) {
      std::vector<uint8_t> p(4);
      std::memcpy(p.data(), &i, 4);
      written = a->send_packet(kc.public_key(), big) && a->send_packet(kb.public_key(), p);
    }
  });
  robustness_expect_in_order(*b, 0, kRounds);
  sender.join();
  EXPECT_TRUE(written);
  auto counters = server_->counters();
  EXPECT_GT(counters["packets_dropped_reason_queue_head"], 0);
  // send_queue_waits counts pauses, not stalled receivers (docs/CLI.md, --queue-wait): C costs
  // A a pause for every write batch of C's that began less than queue_wait ago (its socket
  // still takes a little at a time), about 15 here; none once one write is stuck that long.
  EXPECT_GT(counters["send_queue_waits"], 1);
}

TEST_F(RelayRobustness, RelayingAllocatesNothingPerPacketInSteadyState) {
  ServerOptions o;
  o.threads = 1;
  start(o);
  NodePrivate ka = NodePrivate::generate(), kb = NodePrivate::generate();
  auto a = join(ka), b = join(kb);
  ASSERT_TRUE(a && b);
  // Pre-built batch: 25 packets of 1200 bytes in one write (under the 32-packet queue depth,
  // so none is dropped); B reads them into a fixed buffer.
  constexpr int kPerBatch = 25;
  std::vector<uint8_t> batch;
  const NodePublic b_pub = kb.public_key();
  for (int i = 0; i < kPerBatch; ++i) {
    std::vector<uint8_t> p(b_pub.bytes.begin(), b_pub.bytes.end());
    p.resize(32 + 1200, static_cast<uint8_t>(i));
    auto f = frame_bytes(FrameType::kSendPacket, p);
    batch.insert(batch.end(), f.begin(), f.end());
  }
  const size_t per_batch = kPerBatch * (kFrameHeaderLen + 32 + 1200);
  std::vector<uint8_t> sink(per_batch);
  auto run_batch = [&]() -> bool {
    if (!a->raw().write(batch)) return false;
    size_t got = 0;
    while (got < per_batch) {
      pollfd p{b->raw().fd(), POLLIN, 0};
      if (::poll(&p, 1, 10000) != 1) return false;
      ssize_t n = ::recv(b->raw().fd(), sink.data() + got, per_batch - got, 0);
      if (n <= 0) return false;
      got += static_cast<size_t>(n);
    }
    return true;
  };
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(run_batch());  // warm up pools and caches
  const uint64_t before = g_allocations.load();
  bool ok = true;
  for (int i = 0; i < 400 && ok; ++i) ok = run_batch();  // 10,000 packets
  const uint64_t after = g_allocations.load();
  ASSERT_TRUE(ok);
  EXPECT_EQ(after - before, 0u) << "heap allocations while relaying 10,000 packets";
}

}  // namespace
}  // namespace derp::test
