// The relay core without sockets (nghttp2-style): frames from several fake peers go in as
// bytes, and each peer's writer output comes out as frames. Routing, PeerGone for both reasons,
// the dup-client policy, queue overflow and sender parking, watchers, mesh forwarding, ping and
// health — the behaviour the integration tests see over real sockets, here in microseconds.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>

#include "support/fake_peer.h"

namespace derp {
namespace {

using server::Counter;
using test::FakePeer;
using test::RelayCore;
using test::WrittenFrame;

std::vector<uint8_t> send_packet(const NodePublic& dst, const std::string& data) {
  std::vector<uint8_t> out(kFrameHeaderLen + kKeyLen + data.size());
  encode_send_packet(out, dst, {reinterpret_cast<const uint8_t*>(data.data()), data.size()});
  return out;
}

std::vector<uint8_t> concat(const std::vector<std::vector<uint8_t>>& frames) {
  std::vector<uint8_t> out;
  for (const auto& f : frames) out.insert(out.end(), f.begin(), f.end());
  return out;
}

// A disco-shaped packet (≥ 62 bytes after "TS💬"): the kind that earns a PeerGone(NotHere).
std::string disco_packet() {
  std::string p = "TS\xf0\x9f\x92\xac";
  p.resize(80, 'd');
  return p;
}

struct Received {
  NodePublic src;
  std::string data;
};

std::vector<Received> packets(const std::vector<WrittenFrame>& frames) {
  std::vector<Received> out;
  for (const auto& f : frames) {
    if (f.type != FrameType::kRecvPacket) continue;
    auto v = decode_recv_packet(f.payload);
    EXPECT_TRUE(v.ok());
    if (v.ok()) out.push_back({v->src, std::string(v->data.begin(), v->data.end())});
  }
  return out;
}

std::vector<PeerGoneView> peer_gones(const std::vector<WrittenFrame>& frames) {
  std::vector<PeerGoneView> out;
  for (const auto& f : frames) {
    if (f.type == FrameType::kPeerGone) out.push_back(*decode_peer_gone(f.payload));
  }
  return out;
}

std::vector<NodePublic> peer_presents(const std::vector<WrittenFrame>& frames) {
  std::vector<NodePublic> out;
  for (const auto& f : frames) {
    if (f.type == FrameType::kPeerPresent) out.push_back(decode_peer_present(f.payload)->peer);
  }
  return out;
}

class RelayCoreTest : public ::testing::Test {
 protected:
  ServerOptions options() {
    ServerOptions o;
    o.private_key = NodePrivate::generate();
    return o;
  }
  void make_core(ServerOptions o) { core_ = std::make_unique<RelayCore>(std::move(o)); }
  std::shared_ptr<FakePeer> peer(const NodePublic& key, bool mesh = false) {
    auto p = std::make_shared<FakePeer>(*core_, key, mesh);
    p->join();
    return p;
  }
  std::shared_ptr<FakePeer> peer(bool mesh = false) {
    return peer(NodePrivate::generate().public_key(), mesh);
  }
  int64_t dropped(const std::string& reason) {
    std::map<std::string, int64_t> m;
    core_->stats.fill(m);
    return m.at("packets_dropped_reason_" + reason);
  }
  void TearDown() override {
    if (core_) core_->relay.clear();
  }

  std::unique_ptr<RelayCore> core_;
};

TEST_F(RelayCoreTest, SendPacketArrivesAsRecvPacketFromTheSender) {
  make_core(options());
  auto a = peer(), b = peer(), c = peer();
  ASSERT_TRUE(a->feed(concat({send_packet(b->key(), "one"), send_packet(b->key(), "two")})));
  auto got = packets(b->written());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].src, a->key());
  EXPECT_EQ(got[0].data, "one");
  EXPECT_EQ(got[1].data, "two");
  EXPECT_TRUE(c->written().empty());
  EXPECT_TRUE(a->written().empty());
  EXPECT_EQ(core_->counter(Counter::kPacketsReceived), 2);
  EXPECT_EQ(core_->counter(Counter::kPacketsSent), 2);
}

TEST_F(RelayCoreTest, PeerGoneDisconnectedGoesOnlyToWhoWasHandedPackets) {
  make_core(options());
  auto a = peer(), b = peer(), c = peer();
  ASSERT_TRUE(a->feed(send_packet(b->key(), "hi")));
  ASSERT_EQ(packets(b->written()).size(), 1u);
  a->leave();
  auto gone = peer_gones(b->written());
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].peer, a->key());
  EXPECT_EQ(gone[0].reason, PeerGoneReason::kDisconnected);
  EXPECT_TRUE(c->written().empty());  // never got a packet from a
  EXPECT_EQ(core_->counter(Counter::kPeerGoneDisconnectedFrames), 1);
}

TEST_F(RelayCoreTest, PeerGoneNotHereForDiscoToAnUnknownKeyAtMostThreeAtOnce) {
  make_core(options());
  auto a = peer();
  const NodePublic nobody = NodePrivate::generate().public_key();
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 5; ++i) frames.push_back(send_packet(nobody, disco_packet()));
  frames.push_back(send_packet(nobody, "not disco"));
  ASSERT_TRUE(a->feed(concat(frames)));
  auto gone = peer_gones(a->written());
  ASSERT_EQ(gone.size(), 3u);  // burst 3, one a second
  for (const auto& g : gone) {
    EXPECT_EQ(g.peer, nobody);
    EXPECT_EQ(g.reason, PeerGoneReason::kNotHere);
  }
  EXPECT_EQ(dropped("unknown_dest"), 6);
}

TEST_F(RelayCoreTest, DuplicateKeyLastWriterIsActive) {
  make_core(options());
  const NodePublic k = NodePrivate::generate().public_key();
  auto first = peer(k);
  auto second = peer(k);  // the latest connection is active
  auto s = peer();
  EXPECT_EQ(core_->counter(Counter::kTotalDupClientConns), 1);
  ASSERT_TRUE(s->feed(send_packet(k, "to second")));
  EXPECT_TRUE(packets(first->written()).empty());
  ASSERT_EQ(packets(second->written()).size(), 1u);
  // The first one speaks (any frame): it becomes the active one.
  std::vector<uint8_t> ping(kFrameHeaderLen + 8);
  encode_ping(ping, PingData{1, 2, 3, 4, 5, 6, 7, 8});
  ASSERT_TRUE(first->feed(ping));
  ASSERT_TRUE(s->feed(send_packet(k, "to first")));
  auto got = packets(first->written());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].data, "to first");
  EXPECT_TRUE(packets(second->written()).empty());
  // One of two leaving is not the key leaving: no PeerGone for s.
  second->leave();
  EXPECT_TRUE(peer_gones(s->written()).empty());
}

TEST_F(RelayCoreTest, FullQueueWithoutQueueWaitDropsTheOldest) {
  auto o = options();
  o.queue_wait = std::chrono::milliseconds(0);  // derper's policy
  o.per_client_queue_depth = 4;
  make_core(o);
  auto a = peer(), b = peer();
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 10; ++i) frames.push_back(send_packet(b->key(), "p" + std::to_string(i)));
  ASSERT_TRUE(a->feed(concat(frames)));
  EXPECT_FALSE(a->take_queue_blocked());
  auto got = packets(b->written());
  ASSERT_EQ(got.size(), 4u);  // the freshest four
  EXPECT_EQ(got[0].data, "p6");
  EXPECT_EQ(got[3].data, "p9");
  EXPECT_EQ(dropped("queue_head"), 6);
}

TEST_F(RelayCoreTest, FullQueueParksTheSenderAndWakesItWhenTheWriterDrains) {
  auto o = options();
  o.per_client_queue_depth = 4;  // queue_wait stays at its default (on)
  make_core(o);
  auto a = peer(), b = peer();
  std::vector<std::vector<uint8_t>> frames;
  for (int i = 0; i < 6; ++i) frames.push_back(send_packet(b->key(), "p" + std::to_string(i)));
  const auto bytes = concat(frames);
  auto consumed = a->feed(bytes);
  ASSERT_TRUE(consumed);
  EXPECT_EQ(*consumed, frames[0].size() * 4);  // stopped at the fifth: the reader parks
  EXPECT_TRUE(a->take_queue_blocked());
  EXPECT_EQ(core_->counter(Counter::kQueueWaits), 1);
  EXPECT_EQ(a->wakes, 0);
  auto got = packets(b->written());  // the writer takes the queue: the sender is woken
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(a->wakes, 1);
  // The reader retries from the frame it stopped at; nothing was lost or counted twice.
  auto rest = a->feed(std::span(bytes).subspan(*consumed));
  ASSERT_TRUE(rest);
  EXPECT_EQ(*rest, bytes.size() - *consumed);
  got = packets(b->written());
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].data, "p4");
  EXPECT_EQ(got[1].data, "p5");
  EXPECT_EQ(core_->counter(Counter::kPacketsReceived), 6);
  EXPECT_EQ(dropped("queue_head"), 0);
}

TEST_F(RelayCoreTest, WatchersSeeEveryoneThenArrivalsAndDepartures) {
  make_core(options());
  auto a = peer(), b = peer();
  auto watcher = peer(/*mesh=*/true);
  std::vector<uint8_t> watch(kFrameHeaderLen);
  encode_watch_conns(watch);
  ASSERT_TRUE(watcher->feed(watch));
  auto present = peer_presents(watcher->written());
  EXPECT_EQ(present.size(), 3u);  // a, b and the watcher itself
  EXPECT_NE(std::find(present.begin(), present.end(), a->key()), present.end());
  EXPECT_NE(std::find(present.begin(), present.end(), b->key()), present.end());
  auto c = peer();
  auto now = peer_presents(watcher->written());
  ASSERT_EQ(now.size(), 1u);
  EXPECT_EQ(now[0], c->key());
  c->leave();
  auto gone = peer_gones(watcher->written());
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].peer, c->key());
}

TEST_F(RelayCoreTest, MeshOnlyFramesFromAnOrdinaryClientCloseIt) {
  make_core(options());
  auto a = peer();
  std::vector<uint8_t> watch(kFrameHeaderLen);
  encode_watch_conns(watch);
  auto r = a->feed(watch);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("without the mesh key"), std::string::npos);
  EXPECT_EQ(core_->counter(Counter::kMeshFramesRefused), 1);
}

struct RecordingForwarder : server::Forwarder {
  void forward(const NodePublic& src, const NodePublic& dst, server::Chunk*, const uint8_t* data,
               uint32_t len, bool) override {
    seen.push_back({src, dst, std::string(reinterpret_cast<const char*>(data), len)});
  }
  struct Seen {
    NodePublic src, dst;
    std::string data;
  };
  std::vector<Seen> seen;
};

TEST_F(RelayCoreTest, MeshForwardingBothWays) {
  make_core(options());
  auto a = peer();
  // A key connected to another relay: packets for it go to that relay's forwarder.
  const NodePublic remote = NodePrivate::generate().public_key();
  RecordingForwarder fwd;
  core_->relay.add_forwarder(remote, &fwd);
  ASSERT_TRUE(a->feed(send_packet(remote, "over the mesh")));
  ASSERT_EQ(fwd.seen.size(), 1u);
  EXPECT_EQ(fwd.seen[0].src, a->key());
  EXPECT_EQ(fwd.seen[0].dst, remote);
  EXPECT_EQ(fwd.seen[0].data, "over the mesh");
  // A ForwardPacket from a mesh peer reaches the local key with the original source.
  auto mesh = peer(/*mesh=*/true);
  const std::string data = "from afar";
  std::vector<uint8_t> fp(kFrameHeaderLen + 2 * kKeyLen + data.size());
  encode_forward_packet(fp, remote, a->key(),
                        {reinterpret_cast<const uint8_t*>(data.data()), data.size()});
  ASSERT_TRUE(mesh->feed(fp));
  auto got = packets(a->written());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].src, remote);
  EXPECT_EQ(got[0].data, data);
  EXPECT_EQ(core_->counter(Counter::kPacketsForwardedIn), 1);
  core_->relay.remove_forwarder_everywhere(&fwd);
}

TEST_F(RelayCoreTest, PingGetsAPongAndHealthReachesEveryone) {
  make_core(options());
  auto a = peer(), b = peer();
  std::vector<uint8_t> ping(kFrameHeaderLen + 8);
  encode_ping(ping, PingData{9, 8, 7, 6, 5, 4, 3, 2});
  ASSERT_TRUE(a->feed(ping));
  auto out = a->written();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, FrameType::kPong);
  EXPECT_EQ(*decode_ping(out[0].payload), (PingData{9, 8, 7, 6, 5, 4, 3, 2}));
  core_->relay.set_health("disk on fire");
  for (auto* p : {a.get(), b.get()}) {
    auto frames = p->written();
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].type, FrameType::kHealth);
    EXPECT_EQ(std::string(frames[0].payload.begin(), frames[0].payload.end()), "disk on fire");
  }
}

}  // namespace
}  // namespace derp
