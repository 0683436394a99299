// Frame header, encoders and decoders against PROTOCOL.md §11.
#include "derp/frame.h"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "support/vectors.h"

namespace derp {
namespace {

using test::hexs;
using test::unhex;

const std::string kKHex = "50d20b455ecf12bc453f83c2cfdb2a24925d06cf2598dcaa54e91af82ce9f765";
const std::string kServerHex = "07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c";

NodePublic key_k() { return *NodePublic::parse_hex(kKHex); }
NodePublic key_server() { return *NodePublic::parse_hex(kServerHex); }

std::span<const uint8_t> text_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Runs an encoder into a generous buffer and returns exactly the bytes it wrote.
template <typename Fn>
std::string encoded(Fn&& fn) {
  std::vector<uint8_t> buf(256);
  size_t n = fn(std::span<uint8_t>(buf));
  buf.resize(n);
  return hexs(buf);
}

std::vector<uint8_t> payload_of(const std::string& frame_hex) {
  auto b = unhex(frame_hex);
  return {b.begin() + kFrameHeaderLen, b.end()};
}

// §11, in order.
const std::string kServerKeyHex =
    "0100000028"
    "44455250f09f9491" +
    kServerHex;
const std::string kSendHex = "0400000025" + kKHex + "68656c6c6f";
const std::string kRecvHex = "0500000025" + kKHex + "68656c6c6f";
const std::string kPeerPresentHex = "0900000033" + kKHex +
                                    "00000000000000000000ffffcb007107"
                                    "a2a9"
                                    "01";

TEST(FrameHeader, WritesAndReadsBigEndianLengthIncludingTheMaximum) {
  uint8_t h[kFrameHeaderLen];
  write_frame_header(h, FrameType::kSendPacket, 0x01020304);
  EXPECT_EQ(hexs(h), "0401020304");
  FrameHeader r = read_frame_header(h);
  EXPECT_EQ(r.type, 0x04);
  EXPECT_EQ(r.length, 0x01020304u);

  write_frame_header(h, FrameType::kPing, 0xffffffff);
  EXPECT_EQ(hexs(h), "12ffffffff");
  EXPECT_EQ(read_frame_header(h).length, 0xffffffffu);

  const uint8_t unknown[] = {0xfe, 0, 0, 0, 7};
  EXPECT_EQ(read_frame_header(unknown).type, 0xfe);
  EXPECT_EQ(read_frame_header(unknown).length, 7u);
}

TEST(FrameEncode, EveryFrameMatchesTheProtocolVectors) {
  const NodePublic k = key_k();
  const PingData ping = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::array<uint8_t, 16> ip = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 7};
  const auto hello = text_bytes("hello");

  EXPECT_EQ(encoded([&](auto out) { return encode_server_key(out, key_server()); }), kServerKeyHex);
  EXPECT_EQ(encoded([&](auto out) { return encode_keep_alive(out); }), "0600000000");
  EXPECT_EQ(encoded([&](auto out) { return encode_note_preferred(out, true); }), "070000000101");
  EXPECT_EQ(encoded([&](auto out) { return encode_note_preferred(out, false); }), "070000000100");
  EXPECT_EQ(encoded([&](auto out) { return encode_ping(out, ping); }),
            "12000000080102030405060708");
  EXPECT_EQ(encoded([&](auto out) { return encode_pong(out, ping); }),
            "13000000080102030405060708");
  EXPECT_EQ(
      encoded([&](auto out) { return encode_peer_gone(out, k, PeerGoneReason::kDisconnected); }),
      "0800000021" + kKHex + "00");
  EXPECT_EQ(encoded([&](auto out) { return encode_peer_gone(out, k, PeerGoneReason::kNotHere); }),
            "0800000021" + kKHex + "01");
  EXPECT_EQ(encoded([&](auto out) { return encode_watch_conns(out); }), "1000000000");
  EXPECT_EQ(encoded([&](auto out) { return encode_close_peer(out, k); }), "1100000020" + kKHex);
  EXPECT_EQ(encoded([&](auto out) { return encode_health(out, "BAD"); }), "1400000003424144");
  EXPECT_EQ(encoded([&](auto out) { return encode_health(out, ""); }), "1400000000");
  EXPECT_EQ(encoded([&](auto out) { return encode_restarting(out, 1000, 5000); }),
            "1500000008000003e800001388");
  EXPECT_EQ(encoded([&](auto out) { return encode_send_packet(out, k, hello); }), kSendHex);
  EXPECT_EQ(encoded([&](auto out) { return encode_recv_packet(out, k, hello); }), kRecvHex);
  EXPECT_EQ(encoded([&](auto out) {
              return encode_peer_present(out, k, ip, 41641, peer_present_flags::kIsRegular);
            }),
            kPeerPresentHex);
  // Older derpers' form: no flags byte, 50-byte payload.
  EXPECT_EQ(encoded([&](auto out) { return encode_peer_present_without_flags(out, k, ip, 41641); }),
            "0900000032" + kKHex + "00000000000000000000ffffcb007107a2a9");
}

TEST(FrameEncode, ForwardPacketCarriesSourceThenDestination) {
  const NodePublic src = key_k();
  const NodePublic dst = key_server();
  EXPECT_EQ(
      encoded([&](auto out) { return encode_forward_packet(out, src, dst, text_bytes("hi")); }),
      "0a00000042" + kKHex + kServerHex + "6869");
}

TEST(FrameEncode, ReturnsZeroWhenTheBufferIsTooSmall) {
  const NodePublic k = key_k();
  std::vector<uint8_t> buf(kFrameHeaderLen + kKeyLen + 4);  // one byte short for "hello"
  EXPECT_EQ(encode_send_packet(buf, k, text_bytes("hello")), 0u);
  EXPECT_EQ(encode_send_packet(buf, k, text_bytes("hell")), buf.size());
  EXPECT_EQ(encode_keep_alive(std::span<uint8_t>(buf.data(), 4)), 0u);
  EXPECT_EQ(encode_keep_alive(std::span<uint8_t>(buf.data(), 5)), 5u);
  EXPECT_EQ(encode_ping(std::span<uint8_t>(buf.data(), 12), PingData{}), 0u);
  EXPECT_EQ(encode_server_key(std::span<uint8_t>(buf.data(), 44), k), 0u);
}

TEST(FrameEncode, FrameBytesPrependsTheHeader) {
  const std::vector<uint8_t> payload = {0x42, 0x41, 0x44};
  EXPECT_EQ(hexs(frame_bytes(FrameType::kHealth, payload)), "1400000003424144");
  EXPECT_EQ(hexs(frame_bytes(FrameType::kKeepAlive, {})), "0600000000");
}

TEST(FrameDecode, EveryVectorDecodesBackToItsValues) {
  const NodePublic k = key_k();

  auto sk = decode_server_key(payload_of(kServerKeyHex));
  ASSERT_TRUE(sk.ok()) << sk.error().message;
  EXPECT_EQ(*sk, key_server());

  const auto send_payload = payload_of(kSendHex);
  auto send = decode_send_packet(send_payload);
  ASSERT_TRUE(send.ok());
  EXPECT_EQ(send->dst, k);
  EXPECT_EQ(std::string(send->data.begin(), send->data.end()), "hello");
  EXPECT_EQ(send->data.data(), send_payload.data() + 32) << "a view, not a copy";

  const auto recv_payload = payload_of(kRecvHex);
  auto recv = decode_recv_packet(recv_payload);
  ASSERT_TRUE(recv.ok());
  EXPECT_EQ(recv->src, k);
  EXPECT_EQ(std::string(recv->data.begin(), recv->data.end()), "hello");

  auto gone = decode_peer_gone(payload_of("0800000021" + kKHex + "01"));
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->peer, k);
  EXPECT_EQ(gone->reason, PeerGoneReason::kNotHere);

  auto present = decode_peer_present(payload_of(kPeerPresentHex));
  ASSERT_TRUE(present.ok());
  EXPECT_EQ(present->peer, k);
  EXPECT_TRUE(present->has_endpoint);
  EXPECT_EQ(hexs(present->ip16), "00000000000000000000ffffcb007107");
  EXPECT_EQ(present->port, 41641);
  EXPECT_TRUE(present->has_flags);
  EXPECT_EQ(present->flags, peer_present_flags::kIsRegular);

  auto pref = decode_note_preferred(payload_of("070000000101"));
  ASSERT_TRUE(pref.ok());
  EXPECT_TRUE(*pref);
  auto not_pref = decode_note_preferred(payload_of("070000000100"));
  ASSERT_TRUE(not_pref.ok());
  EXPECT_FALSE(*not_pref);

  auto close = decode_close_peer(payload_of("1100000020" + kKHex));
  ASSERT_TRUE(close.ok());
  EXPECT_EQ(*close, k);

  auto ping = decode_ping(payload_of("12000000080102030405060708"));
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(hexs(*ping), "0102030405060708");

  auto restarting = decode_restarting(payload_of("1500000008000003e800001388"));
  ASSERT_TRUE(restarting.ok());
  EXPECT_EQ(restarting->reconnect_in_ms, 1000u);
  EXPECT_EQ(restarting->try_for_ms, 5000u);

  const auto fwd_payload = payload_of("0a00000042" + kKHex + kServerHex + "6869");
  auto fwd = decode_forward_packet(fwd_payload);
  ASSERT_TRUE(fwd.ok());
  EXPECT_EQ(fwd->src, k);
  EXPECT_EQ(fwd->dst, key_server());
  EXPECT_EQ(hexs(fwd->data), "6869");
}

TEST(FrameDecode, ShortPayloadsAreProtocolErrorsNamingTheFrame) {
  const std::vector<uint8_t> b31(31), b7(7), b63(63), b39(40 - 1);
  auto check = [](const auto& r, const std::string& want) {
    ASSERT_FALSE(r.ok()) << want;
    EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
    EXPECT_EQ(r.error().message, want);
  };
  check(decode_send_packet(b31), "SendPacket frame of 31 bytes is shorter than the minimum of 32");
  check(decode_recv_packet(b31), "RecvPacket frame of 31 bytes is shorter than the minimum of 32");
  check(decode_forward_packet(b63),
        "ForwardPacket frame of 63 bytes is shorter than the minimum of 64");
  check(decode_peer_gone(b31), "PeerGone frame of 31 bytes is shorter than the minimum of 32");
  check(decode_peer_present(b31),
        "PeerPresent frame of 31 bytes is shorter than the minimum of 32");
  check(decode_close_peer(b31), "ClosePeer frame of 31 bytes is shorter than the minimum of 32");
  check(decode_ping(b7), "Ping/Pong frame of 7 bytes is shorter than the minimum of 8");
  check(decode_restarting(b7), "Restarting frame of 7 bytes is shorter than the minimum of 8");
  check(decode_note_preferred({}),
        "NotePreferred frame of 0 bytes is shorter than the minimum of 1");
  check(decode_server_key(b39), "ServerKey frame of 39 bytes is shorter than the minimum of 40");
}

TEST(FrameDecode, ServerKeyWithBadMagicIsRejected) {
  auto payload = payload_of(kServerKeyHex);
  payload[3] ^= 1;
  auto r = decode_server_key(payload);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::kProtocol);
  EXPECT_NE(r.error().message.find("bad magic"), std::string::npos);
}

TEST(FrameDecode, OldRelaysShortPeerGoneMeansDisconnected) {
  auto gone = decode_peer_gone(unhex(kKHex));
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(gone->peer, key_k());
  EXPECT_EQ(gone->reason, PeerGoneReason::kDisconnected);
  // Reasons this code does not know still come through, and extra bytes are ignored.
  auto odd = decode_peer_gone(unhex(kKHex + "7fff"));
  ASSERT_TRUE(odd.ok());
  EXPECT_EQ(static_cast<uint8_t>(odd->reason), 0x7f);
}

TEST(FrameDecode, PeerPresentParsesOnlyWhatItsLengthCarries) {
  const std::string endpoint = "00000000000000000000ffffcb007107a2a9";
  auto key_only = decode_peer_present(unhex(kKHex));
  ASSERT_TRUE(key_only.ok());
  EXPECT_FALSE(key_only->has_endpoint);
  EXPECT_FALSE(key_only->has_flags);
  EXPECT_EQ(key_only->port, 0);

  auto short_endpoint = decode_peer_present(unhex(kKHex + endpoint.substr(0, 34)));  // 49 bytes
  ASSERT_TRUE(short_endpoint.ok());
  EXPECT_FALSE(short_endpoint->has_endpoint);

  auto no_flags = decode_peer_present(unhex(kKHex + endpoint));  // 50 bytes
  ASSERT_TRUE(no_flags.ok());
  EXPECT_TRUE(no_flags->has_endpoint);
  EXPECT_EQ(no_flags->port, 41641);
  EXPECT_FALSE(no_flags->has_flags);

  auto longer = decode_peer_present(unhex(kKHex + endpoint + "06" + "deadbeef"));  // 55 bytes
  ASSERT_TRUE(longer.ok());
  EXPECT_TRUE(longer->has_flags);
  EXPECT_EQ(longer->flags, peer_present_flags::kIsMeshPeer | peer_present_flags::kIsProber);
}

TEST(FrameDecode, LongerPayloadsAreAcceptedAndExtraBytesIgnored) {
  auto ping = decode_ping(unhex("0102030405060708ffffffff"));
  ASSERT_TRUE(ping.ok());
  EXPECT_EQ(hexs(*ping), "0102030405060708");
  auto restarting = decode_restarting(unhex("000000010000000200"));
  ASSERT_TRUE(restarting.ok());
  EXPECT_EQ(restarting->reconnect_in_ms, 1u);
  EXPECT_EQ(restarting->try_for_ms, 2u);
  auto sk = decode_server_key(unhex("44455250f09f9491" + kServerHex + "0000"));
  ASSERT_TRUE(sk.ok());
  EXPECT_EQ(*sk, key_server());
  auto close = decode_close_peer(unhex(kKHex + "00"));
  ASSERT_TRUE(close.ok());
  auto pref = decode_note_preferred(unhex("0200"));
  ASSERT_TRUE(pref.ok());
  EXPECT_TRUE(*pref) << "any non-zero byte means preferred, as in derper";
}

TEST(FrameDecode, EmptyPacketsAreValid) {
  const auto key_only = unhex(kKHex);
  auto send = decode_send_packet(key_only);
  ASSERT_TRUE(send.ok());
  EXPECT_TRUE(send->data.empty());
  const auto keys_only = unhex(kKHex + kServerHex);
  auto fwd = decode_forward_packet(keys_only);
  ASSERT_TRUE(fwd.ok());
  EXPECT_TRUE(fwd->data.empty());
}

TEST(Disco, LooksLikeDiscoNeedsMagicAndSixtyTwoBytes) {
  std::vector<uint8_t> p = {0x54, 0x53, 0xf0, 0x9f, 0x92, 0xac};
  p.resize(62);
  EXPECT_TRUE(looks_like_disco(p));
  p.resize(61);
  EXPECT_FALSE(looks_like_disco(p));
  p.resize(200);
  EXPECT_TRUE(looks_like_disco(p));
  p[5] = 0xad;
  EXPECT_FALSE(looks_like_disco(p));
  EXPECT_FALSE(looks_like_disco({}));
  EXPECT_FALSE(looks_like_disco(text_bytes(std::string(100, 'x'))));
}

TEST(FrameTypeName, NamesEveryTypeAndShowsUnknownOnesInHex) {
  EXPECT_EQ(frame_type_name(0x01), "ServerKey");
  EXPECT_EQ(frame_type_name(0x02), "ClientInfo");
  EXPECT_EQ(frame_type_name(0x03), "ServerInfo");
  EXPECT_EQ(frame_type_name(0x04), "SendPacket");
  EXPECT_EQ(frame_type_name(0x05), "RecvPacket");
  EXPECT_EQ(frame_type_name(0x06), "KeepAlive");
  EXPECT_EQ(frame_type_name(0x07), "NotePreferred");
  EXPECT_EQ(frame_type_name(0x08), "PeerGone");
  EXPECT_EQ(frame_type_name(0x09), "PeerPresent");
  EXPECT_EQ(frame_type_name(0x0a), "ForwardPacket");
  EXPECT_EQ(frame_type_name(0x10), "WatchConns");
  EXPECT_EQ(frame_type_name(0x11), "ClosePeer");
  EXPECT_EQ(frame_type_name(0x12), "Ping");
  EXPECT_EQ(frame_type_name(0x13), "Pong");
  EXPECT_EQ(frame_type_name(0x14), "Health");
  EXPECT_EQ(frame_type_name(0x15), "Restarting");
  EXPECT_EQ(frame_type_name(0x0b), "Unknown(0x0b)");
  EXPECT_EQ(frame_type_name(0x00), "Unknown(0x00)");
  EXPECT_EQ(frame_type_name(0xff), "Unknown(0xff)");
}

}  // namespace
}  // namespace derp
