// FrameReader: any split of the stream gives the same frames; per-role limits; skipping.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "derp/frame.h"
#include "support/vectors.h"

namespace derp {
namespace {

using Role = FrameReader::Role;
using test::hexs;
using test::unhex;

struct Got {
  uint8_t type;
  std::vector<uint8_t> payload;
  bool operator==(const Got&) const = default;
};

void PrintTo(const Got& g, std::ostream* os) {
  *os << frame_type_name(g.type) << "(" << g.payload.size() << " bytes)";
}

std::vector<uint8_t> bytes(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

std::vector<uint8_t> frame(uint8_t type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out(kFrameHeaderLen);
  write_frame_header(out.data(), static_cast<FrameType>(type),
                     static_cast<uint32_t>(payload.size()));
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// A header announcing `length` bytes, without the payload.
std::vector<uint8_t> header(uint8_t type, uint32_t length) {
  std::vector<uint8_t> out(kFrameHeaderLen);
  write_frame_header(out.data(), static_cast<FrameType>(type), length);
  return out;
}

struct Stream {
  std::vector<uint8_t> bytes;
  std::vector<Got> kept;  // what the role delivers, in order
  size_t skipped = 0;
};

void add(Stream& s, uint8_t type, std::vector<uint8_t> payload, bool kept) {
  auto f = frame(type, payload);
  s.bytes.insert(s.bytes.end(), f.begin(), f.end());
  if (kept) {
    s.kept.push_back({type, std::move(payload)});
  } else {
    ++s.skipped;
  }
}

// Every kind of frame a client may send, including the limits' edges, plus frames the relay
// skips (Pong, KeepAlive, ServerKey, unknown types), interleaved.
Stream client_to_server_stream() {
  Stream s;
  add(s, 0x02, bytes(105, 1), true);                   // ClientInfo
  add(s, 0x07, {1}, true);                             // NotePreferred
  add(s, 0x04, bytes(32 + 12, 2), true);               // SendPacket
  add(s, 0x13, bytes(8, 3), false);                    // Pong: skipped
  add(s, 0x04, bytes(32, 4), true);                    // SendPacket, empty packet
  add(s, 0x04, bytes(32 + kMaxPacketSize, 5), true);   // SendPacket, largest
  add(s, 0x0b, bytes(300, 6), false);                  // unknown: skipped
  add(s, 0x12, bytes(8, 7), true);                     // Ping
  add(s, 0x12, bytes(kMaxPingLen, 8), true);           // Ping, largest
  add(s, 0x06, {}, false);                             // KeepAlive: skipped
  add(s, 0x0a, bytes(64 + 100, 9), true);              // ForwardPacket
  add(s, 0x10, {}, true);                              // WatchConns
  add(s, 0x11, bytes(32, 10), true);                   // ClosePeer
  add(s, 0x01, bytes(40, 11), false);                  // ServerKey: skipped
  add(s, 0xff, bytes(70000, 12), false);               // unknown, big: skipped
  add(s, 0x0a, bytes(64 + kMaxPacketSize, 13), true);  // ForwardPacket, largest
  add(s, 0x07, {0}, true);                             // NotePreferred(false)
  return s;
}

// What a relay sends, plus types the client does not know (it gets them; callers ignore them).
Stream server_to_client_stream() {
  Stream s;
  add(s, 0x01, bytes(40, 1), true);                   // ServerKey
  add(s, 0x03, bytes(53, 2), true);                   // ServerInfo
  add(s, 0x05, bytes(32 + 1200, 3), true);            // RecvPacket
  add(s, 0x06, {}, true);                             // KeepAlive
  add(s, 0x08, bytes(33, 4), true);                   // PeerGone
  add(s, 0x09, bytes(51, 5), true);                   // PeerPresent
  add(s, 0x12, bytes(8, 6), true);                    // Ping
  add(s, 0x14, {}, true);                             // Health("")
  add(s, 0x15, bytes(8, 7), true);                    // Restarting
  add(s, 0x0c, bytes(17, 8), true);                   // unknown
  add(s, 0x05, bytes(32 + kMaxPacketSize, 9), true);  // RecvPacket, largest
  add(s, 0x14, bytes(kMaxInfoLen, 10), true);         // the client's limit exactly
  add(s, 0x13, bytes(8, 11), true);                   // Pong
  return s;
}

// Feeds `data` in pieces whose sizes come from `next_piece`, collecting every frame.
template <typename NextPiece>
std::vector<Got> read_all(FrameReader& r, const std::vector<uint8_t>& data, NextPiece next_piece) {
  std::vector<Got> out;
  size_t off = 0;
  while (off < data.size()) {
    size_t n = std::min(next_piece(), data.size() - off);
    std::span<const uint8_t> in(data.data() + off, n);
    off += n;
    for (;;) {
      auto got = r.next(in);
      if (!got.ok()) {
        ADD_FAILURE() << got.error().message;
        return out;
      }
      if (!*got) break;
      out.push_back({(*got)->type, {(*got)->payload.begin(), (*got)->payload.end()}});
    }
    EXPECT_TRUE(in.empty()) << "nullopt must mean all input was consumed";
  }
  EXPECT_EQ(r.buffered(), 0u);
  return out;
}

class FrameReaderSplits : public ::testing::TestWithParam<Role> {
 protected:
  Stream stream() const {
    return GetParam() == Role::kServer ? client_to_server_stream() : server_to_client_stream();
  }
};

TEST_P(FrameReaderSplits, WholeStreamGivesEveryKeptFrame) {
  const Stream s = stream();
  FrameReader r(GetParam());
  EXPECT_EQ(read_all(r, s.bytes, [] { return SIZE_MAX; }), s.kept);
  EXPECT_EQ(r.skipped_frames(), s.skipped);
}

TEST_P(FrameReaderSplits, OneByteAtATimeGivesTheSameFrames) {
  const Stream s = stream();
  FrameReader r(GetParam());
  EXPECT_EQ(read_all(r, s.bytes, [] { return size_t{1}; }), s.kept);
  EXPECT_EQ(r.skipped_frames(), s.skipped);
}

TEST_P(FrameReaderSplits, RandomSplitsGiveTheSameFrames) {
  const Stream s = stream();
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    std::mt19937 rng(seed);
    // Mostly small pieces (headers split everywhere), sometimes large ones (zero-copy path).
    auto piece = [&]() -> size_t {
      switch (rng() % 4) {
        case 0:
          return 1 + rng() % 6;
        case 1:
          return 1 + rng() % 200;
        case 2:
          return 1 + rng() % 5000;
        default:
          return 1 + rng() % 200000;
      }
    };
    FrameReader r(GetParam());
    EXPECT_EQ(read_all(r, s.bytes, piece), s.kept) << "seed " << seed;
    EXPECT_EQ(r.skipped_frames(), s.skipped) << "seed " << seed;
  }
}

INSTANTIATE_TEST_SUITE_P(BothRoles, FrameReaderSplits,
                         ::testing::Values(Role::kServer, Role::kClient), [](const auto& info) {
                           return info.param == Role::kServer ? std::string("Server")
                                                              : std::string("Client");
                         });

TEST(FrameReader, WholeFrameIsAViewIntoTheInput) {
  std::vector<uint8_t> data = frame(0x04, bytes(32 + 10, 1));
  const auto second = frame(0x12, bytes(8, 2));
  data.insert(data.end(), second.begin(), second.end());
  FrameReader r(Role::kServer);
  std::span<const uint8_t> in(data);
  auto a = r.next(in);
  ASSERT_TRUE(a.ok() && *a);
  EXPECT_EQ((*a)->payload.data(), data.data() + kFrameHeaderLen);
  EXPECT_EQ((*a)->payload.size(), 42u);
  EXPECT_EQ(in.data(), data.data() + 47);
  auto b = r.next(in);
  ASSERT_TRUE(b.ok() && *b);
  EXPECT_EQ((*b)->frame_type(), FrameType::kPing);
  EXPECT_EQ((*b)->payload.data(), data.data() + 47 + kFrameHeaderLen);
  EXPECT_TRUE(in.empty());
  auto c = r.next(in);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(*c);
}

TEST(FrameReader, SplitFrameIsAssembledAndHeldUntilComplete) {
  const auto data = frame(0x04, bytes(32 + 100, 3));
  FrameReader r(Role::kServer);
  std::span<const uint8_t> first(data.data(), 50);
  auto a = r.next(first);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE(*a);
  EXPECT_TRUE(first.empty());
  EXPECT_EQ(r.buffered(), 50u);
  std::span<const uint8_t> rest(data.data() + 50, data.size() - 50);
  auto b = r.next(rest);
  ASSERT_TRUE(b.ok() && *b);
  EXPECT_EQ(hexs((*b)->payload), hexs(std::span(data).subspan(kFrameHeaderLen)));
  EXPECT_EQ(r.buffered(), 0u);
}

TEST(FrameReader, TruncatedInputAsksForMore) {
  const auto data = frame(0x12, bytes(8, 1));
  for (size_t cut = 0; cut < data.size(); ++cut) {
    FrameReader r(Role::kServer);
    std::span<const uint8_t> in(data.data(), cut);
    auto got = r.next(in);
    ASSERT_TRUE(got.ok()) << cut;
    EXPECT_FALSE(*got) << cut;
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(r.buffered(), cut);
  }
}

// Feeds a header alone and returns the reader's verdict.
Result<std::optional<FrameReader::Frame>> feed_header(Role role, uint8_t type, uint32_t length) {
  FrameReader r(role);
  const auto h = header(type, length);
  std::span<const uint8_t> in(h);
  return r.next(in);
}

void expect_rejected(Role role, uint8_t type, uint32_t length, const std::string& message) {
  auto got = feed_header(role, type, length);
  ASSERT_FALSE(got.ok()) << frame_type_name(type) << " " << length;
  EXPECT_EQ(got.error().kind, ErrorKind::kProtocol);
  EXPECT_EQ(got.error().message, message);

  // The same verdict when the header arrives one byte at a time.
  FrameReader r(role);
  const auto h = header(type, length);
  for (size_t i = 0; i < h.size(); ++i) {
    std::span<const uint8_t> in(h.data() + i, 1);
    auto step = r.next(in);
    if (i + 1 < h.size()) {
      ASSERT_TRUE(step.ok());
    } else {
      ASSERT_FALSE(step.ok());
      EXPECT_EQ(step.error().message, message);
    }
  }
}

void expect_accepted(Role role, uint8_t type, uint32_t length) {
  auto got = feed_header(role, type, length);
  EXPECT_TRUE(got.ok()) << frame_type_name(type) << " " << length << ": " << got.error().message;
}

TEST(FrameReader, ServerRoleEnforcesPerTypeLimits) {
  const Role s = Role::kServer;
  expect_rejected(s, 0x04, 70000, "SendPacket frame of 70000 bytes exceeds the limit of 65568");
  expect_rejected(s, 0x04, 65569, "SendPacket frame of 65569 bytes exceeds the limit of 65568");
  expect_accepted(s, 0x04, 65568);
  expect_rejected(s, 0x04, 31, "SendPacket frame of 31 bytes is shorter than the minimum of 32");
  expect_rejected(s, 0x04, 0xffffffff,
                  "SendPacket frame of 4294967295 bytes exceeds the limit of 65568");
  expect_rejected(s, 0x0a, 65601, "ForwardPacket frame of 65601 bytes exceeds the limit of 65600");
  expect_rejected(s, 0x0a, 63, "ForwardPacket frame of 63 bytes is shorter than the minimum of 64");
  expect_rejected(s, 0x12, 1001, "Ping frame of 1001 bytes exceeds the limit of 1000");
  expect_rejected(s, 0x12, 7, "Ping frame of 7 bytes is shorter than the minimum of 8");
  expect_rejected(s, 0x07, 0, "NotePreferred frame of 0 bytes has the wrong length (want 1)");
  expect_rejected(s, 0x07, 2, "NotePreferred frame of 2 bytes has the wrong length (want 1)");
  expect_rejected(s, 0x11, 31, "ClosePeer frame of 31 bytes has the wrong length (want 32)");
  expect_rejected(s, 0x11, 33, "ClosePeer frame of 33 bytes has the wrong length (want 32)");
  expect_rejected(s, 0x10, 1, "WatchConns frame of 1 bytes has the wrong length (want 0)");
  expect_rejected(s, 0x02, 55, "ClientInfo frame of 55 bytes is shorter than the minimum of 56");
  expect_rejected(s, 0x02, 262145, "ClientInfo frame of 262145 bytes exceeds the limit of 262144");
  expect_accepted(s, 0x02, 262144);
}

TEST(FrameReader, ClientRoleRejectsFramesOverOneMebibyte) {
  const Role c = Role::kClient;
  expect_rejected(c, 0x05, 1048577,
                  "RecvPacket frame of 1048577 bytes exceeds the limit of 1048576");
  expect_rejected(c, 0x0b, 0xffffffff,
                  "Unknown(0x0b) frame of 4294967295 bytes exceeds the limit of 1048576");
  expect_accepted(c, 0x03, 1048576);
  // The client has no per-type rules: a "short" frame is the decoder's business.
  expect_accepted(c, 0x08, 0);
}

TEST(FrameReader, CheckHeaderTellsKeepSkipOrViolation) {
  bool skip = true;
  EXPECT_TRUE(FrameReader::check_header(Role::kServer, {0x04, 100}, &skip).ok());
  EXPECT_FALSE(skip);
  EXPECT_TRUE(FrameReader::check_header(Role::kServer, {0x13, 0xffffffff}, &skip).ok());
  EXPECT_TRUE(skip);
  EXPECT_FALSE(FrameReader::check_header(Role::kServer, {0x12, 2000}, &skip).ok());
  EXPECT_TRUE(FrameReader::check_header(Role::kClient, {0x13, 8}, &skip).ok());
  EXPECT_FALSE(skip);
}

TEST(FrameReader, HugeSkippedFrameIsNeverBuffered) {
  // 10 MB of an unknown type, then a Ping: the relay drops the first without holding it.
  constexpr uint32_t kHuge = 10 * 1000 * 1000;
  std::vector<uint8_t> data = header(0x7e, kHuge);
  data.resize(data.size() + kHuge, 0xab);
  const auto ping = frame(0x12, bytes(8, 5));
  data.insert(data.end(), ping.begin(), ping.end());

  FrameReader r(Role::kServer);
  std::vector<Got> got;
  size_t max_buffered = 0;
  for (size_t off = 0; off < data.size(); off += 65536) {
    std::span<const uint8_t> in(data.data() + off, std::min<size_t>(65536, data.size() - off));
    for (;;) {
      auto f = r.next(in);
      ASSERT_TRUE(f.ok()) << f.error().message;
      max_buffered = std::max(max_buffered, r.buffered());
      if (!*f) break;
      got.push_back({(*f)->type, {(*f)->payload.begin(), (*f)->payload.end()}});
    }
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, 0x12);
  EXPECT_EQ(r.skipped_frames(), 1u);
  EXPECT_LE(max_buffered, kFrameHeaderLen);
}

TEST(FrameReader, SkippedFramesOfAnyAnnouncedLengthAreNotErrors) {
  // Pong and KeepAlive are skipped by the relay however long they claim to be.
  for (uint8_t type : {uint8_t{0x13}, uint8_t{0x06}, uint8_t{0x01}, uint8_t{0x30}}) {
    FrameReader r(Role::kServer);
    auto data = header(type, 0xffffffff);
    data.resize(data.size() + 4096);
    std::span<const uint8_t> in(data);
    auto got = r.next(in);
    ASSERT_TRUE(got.ok()) << frame_type_name(type);
    EXPECT_FALSE(*got);
    EXPECT_TRUE(in.empty());
    EXPECT_EQ(r.buffered(), 0u);
  }
}

TEST(FrameReader, ReaderRefusesUseAfterAnError) {
  FrameReader r(Role::kServer);
  auto bad = header(0x12, 5000);
  std::span<const uint8_t> in(bad);
  ASSERT_FALSE(r.next(in).ok());
  const auto good = frame(0x12, bytes(8, 1));
  std::span<const uint8_t> more(good);
  auto again = r.next(more);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().kind, ErrorKind::kInternal);
  EXPECT_NE(again.error().message.find("after a protocol error"), std::string::npos);
}

TEST(FrameReader, EmptyInputNeedsMore) {
  FrameReader r(Role::kClient);
  std::span<const uint8_t> in;
  auto got = r.next(in);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(*got);
  EXPECT_EQ(r.buffered(), 0u);
}

}  // namespace
}  // namespace derp
