// The relay's steady-state behaviour (PROTOCOL.md §4), driven by raw DERP test clients.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <vector>

#include "derp/frame.h"
#include "derp/server.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

struct Peer {
  NodePrivate key = NodePrivate::generate();
  std::unique_ptr<DerpConn> conn;
  NodePublic pub() const { return key.public_key(); }
};

class RelayTest : public ::testing::Test {
 protected:
  void start(ServerOptions o = {}) {
    o.log = logs_.sink();
    server_ = start_relay(std::move(o));
    ASSERT_TRUE(server_);
  }
  Peer join(DerpConn::Options opts = {}) {
    Peer p;
    p.conn = DerpConn::connect(server_->port(), p.key, server_->public_key(), opts);
    EXPECT_TRUE(p.conn);
    return p;
  }
  Peer join_as(const NodePrivate& key) {
    Peer p;
    p.key = key;
    p.conn = DerpConn::connect(server_->port(), p.key, server_->public_key());
    EXPECT_TRUE(p.conn);
    return p;
  }
  int64_t counter(const std::string& name) { return server_->counters()[name]; }

  LogWatch logs_;
  std::unique_ptr<Server> server_;
};

std::vector<uint8_t> disco_payload(size_t n = 62) {
  std::vector<uint8_t> p(n, 0x42);
  const uint8_t magic[] = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};
  std::memcpy(p.data(), magic, sizeof magic);
  return p;
}

void expect_recv(DerpConn& c, const NodePublic& src, const std::vector<uint8_t>& payload) {
  auto f = c.read_frame();
  ASSERT_TRUE(f.has_value());
  ASSERT_EQ(f->frame_type(), FrameType::kRecvPacket);
  auto v = decode_recv_packet(f->payload);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->src, src);
  EXPECT_EQ(std::vector<uint8_t>(v->data.begin(), v->data.end()), payload);
}

TEST_F(RelayTest, DeliversPacketsOfEverySizeWithTheSourceKey) {
  start();
  Peer a = join(), b = join();
  ASSERT_TRUE(a.conn && b.conn);
  for (size_t n : {size_t{0}, size_t{1}, size_t{1200}, size_t{65536}}) {
    std::vector<uint8_t> payload(n);
    for (size_t i = 0; i < n; ++i) payload[i] = static_cast<uint8_t>(i * 7 + n);
    ASSERT_TRUE(a.conn->send_packet(b.pub(), payload));
    expect_recv(*b.conn, a.pub(), payload);
  }
  // A send is counted when its write completes, which may be after the receiver has read it.
  EXPECT_TRUE(eventually([&] { return counter("packets_sent") == 4; })) << counter("packets_sent");
  EXPECT_EQ(counter("bytes_received"), 0 + 1 + 1200 + 65536);
}

TEST_F(RelayTest, DeliversToTheSendersOwnKey) {
  start();
  Peer a = join();
  ASSERT_TRUE(a.conn);
  const std::vector<uint8_t> payload = {1, 2, 3};
  ASSERT_TRUE(a.conn->send_packet(a.pub(), payload));
  expect_recv(*a.conn, a.pub(), payload);
}

TEST_F(RelayTest, ClosesTheSenderOfAnOversizePacketOnly) {
  start();
  Peer a = join(), b = join(), c = join();
  ASSERT_TRUE(a.conn && b.conn && c.conn);
  ASSERT_TRUE(a.conn->send_packet(b.pub(), std::vector<uint8_t>(65537)));
  EXPECT_TRUE(a.conn->raw().wait_closed());
  ASSERT_TRUE(c.conn->send_packet(b.pub(), std::vector<uint8_t>{9}));
  expect_recv(*b.conn, c.pub(), {9});
}

TEST_F(RelayTest, SendsNotHereOnlyForDiscoPayloadsAndAtMostThreeInABurst) {
  start();
  Peer a = join();
  ASSERT_TRUE(a.conn);
  const NodePublic nobody = NodePrivate::generate().public_key();
  ASSERT_TRUE(a.conn->send_packet(nobody, std::vector<uint8_t>(100, 1)));
  ASSERT_TRUE(a.conn->send_packet(nobody, disco_payload(61)));  // one byte short of disco
  auto before = a.conn->sync();
  ASSERT_TRUE(before.has_value());
  EXPECT_TRUE(before->empty());

  std::vector<uint8_t> burst;
  for (int i = 0; i < 5; ++i) {
    std::vector<uint8_t> p(nobody.bytes.begin(), nobody.bytes.end());
    auto d = disco_payload();
    p.insert(p.end(), d.begin(), d.end());
    auto f = frame_bytes(FrameType::kSendPacket, p);
    burst.insert(burst.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(a.conn->raw().write(burst));  // one write: well inside the 1/s refill
  auto got = a.conn->sync();
  ASSERT_TRUE(got.has_value());
  ASSERT_EQ(got->size(), 3u);
  for (const Frame& f : *got) {
    EXPECT_EQ(f.frame_type(), FrameType::kPeerGone);
    auto g = decode_peer_gone(f.payload);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g->peer, nobody);
    EXPECT_EQ(g->reason, PeerGoneReason::kNotHere);
  }
  EXPECT_EQ(counter("peer_gone_not_here_frames"), 3);
  EXPECT_EQ(counter("packets_dropped_reason_unknown_dest"), 7);
}

TEST_F(RelayTest, SendsPeerGoneWhenASenderDisconnects) {
  start();
  Peer a = join(), b = join(), c = join();
  ASSERT_TRUE(a.conn && b.conn && c.conn);
  ASSERT_TRUE(a.conn->send_packet(b.pub(), std::vector<uint8_t>{1}));
  expect_recv(*b.conn, a.pub(), {1});
  a.conn->raw().close();
  auto f = b.conn->read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->bytes(), [&] {
    std::vector<uint8_t> out(kFrameHeaderLen + kKeyLen + 1);
    out.resize(encode_peer_gone(out, a.pub(), PeerGoneReason::kDisconnected));
    return out;
  }());
  // C never received from A: it is told nothing. B's later frames show no second PeerGone.
  auto c_frames = c.conn->sync();
  ASSERT_TRUE(c_frames.has_value());
  EXPECT_TRUE(c_frames->empty());
  auto b_frames = b.conn->sync();
  ASSERT_TRUE(b_frames.has_value());
  EXPECT_TRUE(b_frames->empty());
  EXPECT_EQ(counter("gauge_current_connections"), 2);
}

TEST_F(RelayTest, AnswersEachPingWithAPongOfTheSameBytes) {
  start();
  Peer a = join();
  ASSERT_TRUE(a.conn);
  const PingData ping = {1, 2, 3, 4, 5, 6, 7, 0x2a};
  ASSERT_TRUE(a.conn->send_ping(ping));
  auto f = a.conn->read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->frame_type(), FrameType::kPong);
  EXPECT_EQ(f->payload, std::vector<uint8_t>(ping.begin(), ping.end()));
  // A longer Ping (up to 1000 bytes) is answered with its first 8 bytes.
  std::vector<uint8_t> long_ping(100, 7);
  ASSERT_TRUE(a.conn->send_frame(FrameType::kPing, long_ping));
  f = a.conn->read_frame();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->payload, std::vector<uint8_t>(8, 7));
  EXPECT_EQ(counter("got_ping"), 2);
}

TEST_F(RelayTest, SendsKeepAlivesOnAnIdleConnection) {
  ServerOptions o;
  o.keep_alive = std::chrono::milliseconds(50);
  start(o);
  Peer a = join();
  ASSERT_TRUE(a.conn);
  auto f = a.conn->read_frame(kWait, /*keep_alives=*/true);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->bytes(), (std::vector<uint8_t>{0x06, 0, 0, 0, 0}));
}

TEST_F(RelayTest, NotePreferredMovesTheHomeGaugeIdempotently) {
  start();
  Peer a = join(), b = join();
  ASSERT_TRUE(a.conn && b.conn);
  const std::vector<uint8_t> yes = {1}, no = {0};
  ASSERT_TRUE(a.conn->send_frame(FrameType::kNotePreferred, yes));
  ASSERT_TRUE(a.conn->send_frame(FrameType::kNotePreferred, yes));
  ASSERT_TRUE(a.conn->sync());
  EXPECT_EQ(counter("gauge_current_home_connections"), 1);
  ASSERT_TRUE(b.conn->send_frame(FrameType::kNotePreferred, yes));
  ASSERT_TRUE(b.conn->sync());
  EXPECT_EQ(counter("gauge_current_home_connections"), 2);
  ASSERT_TRUE(a.conn->send_frame(FrameType::kNotePreferred, no));
  ASSERT_TRUE(a.conn->sync());
  EXPECT_EQ(counter("gauge_current_home_connections"), 1);
  b.conn->raw().close();
  ASSERT_TRUE(a.conn->sync());
  // B's departure is handled on its own loop; ping round trips bound the wait (no sleeps).
  for (int i = 0; i < 1000 && counter("gauge_current_connections") != 1; ++i) {
    ASSERT_TRUE(a.conn->sync());
  }
  EXPECT_EQ(counter("gauge_current_home_connections"), 0);
}

TEST_F(RelayTest, NewestDuplicateIsActiveUntilTheOldOneSends) {
  start();
  const NodePrivate shared = NodePrivate::generate();
  Peer old_conn = join_as(shared), new_conn = join_as(shared), sender = join();
  ASSERT_TRUE(old_conn.conn && new_conn.conn && sender.conn);
  EXPECT_EQ(counter("gauge_current_dup_client_keys"), 1);
  EXPECT_EQ(counter("gauge_current_dup_client_conns"), 2);
  ASSERT_TRUE(sender.conn->send_packet(shared.public_key(), std::vector<uint8_t>{1}));
  expect_recv(*new_conn.conn, sender.pub(), {1});

  ASSERT_TRUE(old_conn.conn->sync());  // any frame from a duplicate makes it active
  ASSERT_TRUE(sender.conn->send_packet(shared.public_key(), std::vector<uint8_t>{2}));
  expect_recv(*old_conn.conn, sender.pub(), {2});

  // The active one leaves: the remaining one is the sole connection again.
  old_conn.conn->raw().close();
  for (int i = 0; i < 1000 && counter("gauge_current_dup_client_keys") != 0; ++i) {
    ASSERT_TRUE(sender.conn->sync());
  }
  EXPECT_EQ(counter("gauge_current_dup_client_keys"), 0);
  ASSERT_TRUE(sender.conn->send_packet(shared.public_key(), std::vector<uint8_t>{3}));
  expect_recv(*new_conn.conn, sender.pub(), {3});
  EXPECT_EQ(counter("counter_total_dup_client_conns"), 1);
}

TEST_F(RelayTest, ClosesAWatcherWithoutTheMeshKey) {
  ServerOptions o;
  o.mesh_key = *MeshKey::parse(std::string(64, 'a'));
  start(o);
  Peer a = join();
  ASSERT_TRUE(a.conn);
  ASSERT_TRUE(a.conn->send_frame(FrameType::kWatchConns, {}));
  EXPECT_TRUE(a.conn->raw().wait_closed());
  EXPECT_TRUE(logs_.wait_for("WatchConns from a client without the mesh key")) << logs_.all();
}

TEST_F(RelayTest, WatcherSeesEveryoneThenLiveChanges) {
  ServerOptions o;
  o.mesh_key = *MeshKey::parse(std::string(64, 'b'));
  start(o);
  Peer a = join();
  DerpConn::Options mesh;
  mesh.mesh_key = o.mesh_key;
  Peer w = join(mesh);
  ASSERT_TRUE(a.conn && w.conn);
  ASSERT_TRUE(w.conn->send_frame(FrameType::kWatchConns, {}));
  auto first = w.conn->sync();
  ASSERT_TRUE(first.has_value());
  ASSERT_EQ(first->size(), 2u);
  std::set<NodePublic> keys = {frame_key((*first)[0]), frame_key((*first)[1])};
  EXPECT_EQ(keys, (std::set<NodePublic>{a.pub(), w.pub()}));
  EXPECT_EQ(counter("gauge_watchers"), 1);

  Peer c = join();
  ASSERT_TRUE(c.conn);
  auto present = w.conn->read_frame();
  ASSERT_TRUE(present.has_value());
  EXPECT_EQ(present->frame_type(), FrameType::kPeerPresent);
  EXPECT_EQ(frame_key(*present), c.pub());
  auto pp = decode_peer_present(present->payload);
  ASSERT_TRUE(pp.ok());
  EXPECT_EQ(pp->port, c.conn->raw().local_port());
  EXPECT_EQ(pp->flags, peer_present_flags::kIsRegular);
  c.conn->raw().close();
  auto gone = w.conn->read_frame();
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->frame_type(), FrameType::kPeerGone);
  EXPECT_EQ(frame_key(*gone), c.pub());
}

TEST_F(RelayTest, ClosePeerFromAMeshPeerClosesTheTarget) {
  ServerOptions o;
  o.mesh_key = *MeshKey::parse(std::string(64, 'c'));
  start(o);
  DerpConn::Options mesh;
  mesh.mesh_key = o.mesh_key;
  Peer m = join(mesh), target = join(), other = join();
  ASSERT_TRUE(m.conn && target.conn && other.conn);
  ASSERT_TRUE(m.conn->send_frame(FrameType::kClosePeer, target.pub().bytes));
  EXPECT_TRUE(target.conn->raw().wait_closed());
  auto still = m.conn->sync();
  ASSERT_TRUE(still.has_value());
  // A non-mesh client asking the same is closed itself.
  ASSERT_TRUE(other.conn->send_frame(FrameType::kClosePeer, m.pub().bytes));
  EXPECT_TRUE(other.conn->raw().wait_closed());
  EXPECT_TRUE(m.conn->sync().has_value());
}

TEST_F(RelayTest, DeliversForwardPacketFromAMeshPeerWithTheFramesSource) {
  ServerOptions o;
  o.mesh_key = *MeshKey::parse(std::string(64, 'd'));
  start(o);
  DerpConn::Options mesh;
  mesh.mesh_key = o.mesh_key;
  Peer m = join(mesh), b = join(), plain = join();
  ASSERT_TRUE(m.conn && b.conn && plain.conn);
  const NodePublic remote_src = NodePrivate::generate().public_key();
  std::vector<uint8_t> fwd(kFrameHeaderLen + 2 * kKeyLen + 3);
  const std::vector<uint8_t> payload = {7, 8, 9};
  fwd.resize(encode_forward_packet(fwd, remote_src, b.pub(), payload));
  ASSERT_TRUE(m.conn->raw().write(fwd));
  expect_recv(*b.conn, remote_src, payload);
  EXPECT_EQ(counter("packets_forwarded_in"), 1);
  // To an unknown key: dropped as unknown_dest_on_fwd.
  fwd.resize(kFrameHeaderLen + 2 * kKeyLen + 3);
  fwd.resize(encode_forward_packet(fwd, remote_src, NodePrivate::generate().public_key(), payload));
  ASSERT_TRUE(m.conn->raw().write(fwd));
  ASSERT_TRUE(m.conn->sync());
  EXPECT_EQ(counter("packets_dropped_reason_unknown_dest_on_fwd"), 1);
  // The same frame from a non-mesh client closes it.
  ASSERT_TRUE(plain.conn->raw().write(fwd));
  EXPECT_TRUE(plain.conn->raw().wait_closed());
}

}  // namespace
}  // namespace derp::test
