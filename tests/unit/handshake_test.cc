// Handshake boxes and JSON against PROTOCOL.md §3 and §11.
#include "derp/handshake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/vectors.h"

namespace derp {
namespace {

using test::hexs;
using test::unhex;

const char* kClientPriv =
    "privkey:40ab1b58e9076c7a4d9d07291f5edf9d1aa017eb949624ba683317f48a640369";
const char* kServerPriv =
    "privkey:0002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f60";
const std::string kClientPubHex =
    "50d20b455ecf12bc453f83c2cfdb2a24925d06cf2598dcaa54e91af82ce9f765";
const std::string kMeshHex = "4be335de831a09a73d40ccd9a8a8314763f41a4538baf3b6decd394acde0e0c4";

// §11: ClientInfo {"version":2,"CanAckPings":true} with nonce 00..17.
const std::string kClientInfoFrameHex =
    "0200000068" + kClientPubHex + "000102030405060708090a0b0c0d0e0f1011121314151617" +
    "05de3f91dd9e9ff5564250f27380ec372e5eb0e6d2eea07e1b617e4c4c3126d5" +
    "0913723c3ccf7b3e6bd749317ac7aab2";
// §11: ServerInfo {"version":2} with nonce 18..2f.
const std::string kServerInfoFrameHex =
    "0300000035"
    "18191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f" +
    std::string("1e4724ca1fb1a60e5434c08ba1b9ed78f813120aab98b056d124437ef6");

NodePrivate client_priv() { return *NodePrivate::parse(kClientPriv); }
NodePrivate server_priv() { return *NodePrivate::parse(kServerPriv); }

Nonce nonce_from(uint8_t first) {
  Nonce n;
  for (size_t i = 0; i < n.size(); ++i) n[i] = static_cast<uint8_t>(first + i);
  return n;
}

std::vector<uint8_t> payload_of(const std::vector<uint8_t>& frame) {
  return {frame.begin() + kFrameHeaderLen, frame.end()};
}

std::span<const uint8_t> handshake_text_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(Handshake, ClientInfoFrameMatchesTheProtocolVectorAndOpensBack) {
  ClientInfo info;
  info.can_ack_pings = true;
  const auto frame =
      encode_client_info_frame(client_priv(), server_priv().public_key(), info, nonce_from(0x00));
  EXPECT_EQ(hexs(frame), kClientInfoFrameHex);

  auto opened = open_client_info(server_priv(), payload_of(unhex(kClientInfoFrameHex)));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(opened->client.hex(), kClientPubHex);
  EXPECT_EQ(opened->info.version, 2);
  EXPECT_TRUE(opened->info.can_ack_pings);
  EXPECT_FALSE(opened->info.is_prober);
  EXPECT_TRUE(opened->info.mesh_key.is_zero());
}

TEST(Handshake, ServerInfoFrameMatchesTheProtocolVectorAndOpensBack) {
  const auto frame = encode_server_info_frame(server_priv(), client_priv().public_key(),
                                              ServerInfo{}, nonce_from(0x18));
  EXPECT_EQ(hexs(frame), kServerInfoFrameHex);

  auto opened = open_server_info(client_priv(), server_priv().public_key(),
                                 payload_of(unhex(kServerInfoFrameHex)));
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(opened->version, 2);
  EXPECT_EQ(opened->token_bucket_bytes_per_second, 0);
}

TEST(Handshake, SealUsesAFreshNonceAndOpensWithTheOtherSide) {
  const auto msg = handshake_text_bytes("attack at dawn");
  auto a = seal_to(client_priv(), server_priv().public_key(), msg);
  auto b = seal_to(client_priv(), server_priv().public_key(), msg);
  ASSERT_EQ(a.size(), kNonceLen + 16 + msg.size());
  EXPECT_NE(hexs(a), hexs(b));
  auto opened = open_from(server_priv(), client_priv().public_key(), a);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ(std::string(opened->begin(), opened->end()), "attack at dawn");
}

TEST(Handshake, OpenFailsWithTheWrongKeyOrATamperedBox) {
  auto sealed = seal_to(client_priv(), server_priv().public_key(), handshake_text_bytes("{}"));
  // Wrong recipient.
  auto wrong = open_from(NodePrivate::generate(), client_priv().public_key(), sealed);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().kind, ErrorKind::kProtocol);
  // One flipped bit anywhere (nonce, MAC or ciphertext).
  for (size_t i : {size_t{0}, kNonceLen, sealed.size() - 1}) {
    auto bad = sealed;
    bad[i] ^= 0x01;
    EXPECT_FALSE(open_from(server_priv(), client_priv().public_key(), bad).ok()) << i;
  }
  // Shorter than nonce + MAC.
  std::vector<uint8_t> tiny(kNonceLen + 15);
  auto short_box = open_from(server_priv(), client_priv().public_key(), tiny);
  ASSERT_FALSE(short_box.ok());
  EXPECT_EQ(short_box.error().kind, ErrorKind::kProtocol);
}

TEST(Handshake, ClientInfoSealedForAnotherServerIsRejectedNamingTheClient) {
  const auto frame =
      encode_client_info_frame(client_priv(), NodePrivate::generate().public_key(), ClientInfo{});
  auto opened = open_client_info(server_priv(), payload_of(frame));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().kind, ErrorKind::kProtocol);
  EXPECT_EQ(
      opened.error().message.rfind("cannot open ClientInfo box from nodekey:" + kClientPubHex, 0),
      0u)
      << opened.error().message;
}

TEST(Handshake, TruncatedOrOversizedClientInfoIsRejected) {
  auto payload = payload_of(unhex(kClientInfoFrameHex));
  payload.pop_back();
  auto truncated = open_client_info(server_priv(), payload);
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.error().kind, ErrorKind::kProtocol);

  std::vector<uint8_t> too_short(55);
  auto s = open_client_info(server_priv(), too_short);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "ClientInfo frame of 55 bytes, want 56..262144");

  std::vector<uint8_t> too_long(kMaxClientInfoLen + 1);
  auto l = open_client_info(server_priv(), too_long);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().message, "ClientInfo frame of 262145 bytes, want 56..262144");
}

TEST(Handshake, ServerInfoSizeLimitsAndWrongKey) {
  const NodePublic server = server_priv().public_key();
  auto s = open_server_info(client_priv(), server, std::vector<uint8_t>(23));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().message, "ServerInfo frame of 23 bytes, want 24..1048600");
  auto l = open_server_info(client_priv(), server, std::vector<uint8_t>(24 + kMaxInfoLen + 1));
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.error().message.find("1048601 bytes"), std::string::npos);
  // From a server with another key: the box does not open.
  auto other = open_server_info(client_priv(), NodePrivate::generate().public_key(),
                                payload_of(unhex(kServerInfoFrameHex)));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().kind, ErrorKind::kProtocol);
  EXPECT_EQ(other.error().message.rfind("cannot open ServerInfo box from nodekey:", 0), 0u);
}

TEST(Handshake, BoxThatOpensToBadJsonIsAProtocolError) {
  const NodePublic client = client_priv().public_key();
  std::vector<uint8_t> payload(client.bytes.begin(), client.bytes.end());
  auto sealed = seal_to(client_priv(), server_priv().public_key(), handshake_text_bytes("{\"version\":"));
  payload.insert(payload.end(), sealed.begin(), sealed.end());
  auto opened = open_client_info(server_priv(), payload);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().kind, ErrorKind::kProtocol);
  EXPECT_NE(opened.error().message.find("ClientInfo from nodekey:" + kClientPubHex),
            std::string::npos)
      << opened.error().message;
  EXPECT_NE(opened.error().message.find("not valid JSON"), std::string::npos);
}

TEST(ClientInfoJson, EmitsExactlyWhatGoEmits) {
  ClientInfo info;
  info.can_ack_pings = true;
  EXPECT_EQ(client_info_to_json(info), R"({"version":2,"CanAckPings":true})");

  ClientInfo mesh;
  mesh.mesh_key = *MeshKey::parse(kMeshHex);
  EXPECT_EQ(client_info_to_json(mesh),
            R"({"meshKey":")" + kMeshHex + R"(","version":2,"CanAckPings":false})");

  ClientInfo bare;
  bare.version = 0;
  EXPECT_EQ(client_info_to_json(bare), R"({"CanAckPings":false})");

  ClientInfo prober;
  prober.can_ack_pings = true;
  prober.is_prober = true;
  prober.app_name = "derp-probe";
  EXPECT_EQ(client_info_to_json(prober),
            R"({"version":2,"CanAckPings":true,"IsProber":true,"AppName":"derp-probe"})");
}

TEST(ClientInfoJson, AppNameIsEscapedAsGoDoes) {
  ClientInfo info;
  // HTML-sensitive characters, quote, backslash, control bytes, U+2028, valid UTF-8 and one
  // invalid byte.
  info.app_name = "a<b>&\"\\\n\t\x01\x7f\xe2\x80\xa8\xc3\xa9\xff!";
  EXPECT_EQ(client_info_to_json(info),
            "{\"version\":2,\"CanAckPings\":false,\"AppName\":"
            "\"a\\u003cb\\u003e\\u0026\\\"\\\\\\n\\t\\u0001\x7f\\u2028\xc3\xa9\\ufffd!\"}");
}

TEST(ClientInfoJson, DecodesKeysCaseInsensitively) {
  auto info = client_info_from_json(R"({"Version":5,"MeshKey":")" + kMeshHex +
                                    R"(","canackpings":true,"ISPROBER":true,"appname":"x"})");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->version, 5);
  EXPECT_EQ(info->mesh_key.hex(), kMeshHex);
  EXPECT_TRUE(info->can_ack_pings);
  EXPECT_TRUE(info->is_prober);
  EXPECT_EQ(info->app_name, "x");
}

TEST(ClientInfoJson, EmptyObjectIsAcceptedWithZeroValues) {
  auto info = client_info_from_json("{}");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->version, 0);
  EXPECT_TRUE(info->mesh_key.is_zero());
  EXPECT_FALSE(info->can_ack_pings);
  EXPECT_TRUE(client_info_from_json(" { } ").ok());
}

TEST(ClientInfoJson, UnknownKeysAndNullValuesAreIgnored) {
  auto info = client_info_from_json(
      R"({"version":2,"Future":{"a":[1,2,3]},"CanAckPings":null,"x":"y","AppName":null})");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->version, 2);
  EXPECT_FALSE(info->can_ack_pings);
}

TEST(ClientInfoJson, BadMeshKeysAreRejected) {
  for (const std::string& mesh :
       {"\"" + kMeshHex.substr(1) + "\"", "\"" + kMeshHex + "0\"", std::string("\"\""),
        std::string("null"), std::string("42"), "\"" + kMeshHex.substr(2) + "zz\"",
        "\" " + kMeshHex.substr(1) + "\""}) {
    auto info = client_info_from_json(R"({"version":2,"meshKey":)" + mesh + "}");
    ASSERT_FALSE(info.ok()) << mesh;
    EXPECT_EQ(info.error().kind, ErrorKind::kProtocol);
    EXPECT_NE(info.error().message.find("meshKey"), std::string::npos) << info.error().message;
  }
}

TEST(ClientInfoJson, WrongTypesAndMalformedJsonAreRejected) {
  for (const char* json :
       {R"({"version":"2"})", R"({"version":2.5})", R"({"version":99999999999})",
        R"({"CanAckPings":1})", R"({"IsProber":"yes"})", R"({"AppName":5})", "[]", "\"x\"", "", "{",
        R"({"version":2} x)", "{\"version\":2,}", R"({"version":1e400})", R"({"x":[-1e999]})"}) {
    auto info = client_info_from_json(json);
    ASSERT_FALSE(info.ok()) << json;
    EXPECT_EQ(info.error().kind, ErrorKind::kProtocol);
  }
}

TEST(ServerInfoJson, EmitsVersionAndOnlyNonZeroTokenBucketFields) {
  EXPECT_EQ(server_info_to_json(ServerInfo{}), R"({"version":2})");
  ServerInfo limited;
  limited.token_bucket_bytes_per_second = 1000;
  limited.token_bucket_bytes_burst = 65568;
  EXPECT_EQ(server_info_to_json(limited),
            R"({"version":2,"TokenBucketBytesPerSecond":1000,"TokenBucketBytesBurst":65568})");
  ServerInfo empty;
  empty.version = 0;
  EXPECT_EQ(server_info_to_json(empty), "{}");
}

TEST(ServerInfoJson, DecodesCaseInsensitivelyAndRejectsWrongTypes) {
  auto info = server_info_from_json(
      R"({"Version":2,"tokenbucketbytespersecond":100,"TOKENBUCKETBYTESBURST":200,"z":1})");
  ASSERT_TRUE(info.ok()) << info.error().message;
  EXPECT_EQ(info->version, 2);
  EXPECT_EQ(info->token_bucket_bytes_per_second, 100);
  EXPECT_EQ(info->token_bucket_bytes_burst, 200);
  auto empty = server_info_from_json("{}");
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->version, 0);
  EXPECT_FALSE(server_info_from_json(R"({"version":true})").ok());
  EXPECT_FALSE(server_info_from_json("nope").ok());
  auto huge = server_info_from_json(R"({"TokenBucketBytesBurst":50e316})");
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().message, "ServerInfo is not valid JSON (a number is out of range)");
}

FrameReader::Frame view(const std::vector<uint8_t>& frame) {
  return {frame[0], std::span<const uint8_t>(frame).subspan(kFrameHeaderLen)};
}

std::vector<uint8_t> server_key_frame(const std::string& payload_hex) {
  return frame_bytes(FrameType::kServerKey, unhex(payload_hex));
}

TEST(ServerKeyFrame, AcceptsTheServersKeyAndChecksThePin) {
  const NodePublic server = server_priv().public_key();
  const auto frame = server_key_frame("44455250f09f9491" + server.hex());
  auto k = check_server_key_frame(view(frame), std::nullopt);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(*k, server);
  EXPECT_TRUE(check_server_key_frame(view(frame), server).ok());

  const NodePublic other = client_priv().public_key();
  auto mismatch = check_server_key_frame(view(frame), other);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_EQ(mismatch.error().kind, ErrorKind::kProtocol);
  EXPECT_EQ(mismatch.error().message, "server key mismatch (expected " + other.to_string() +
                                          ", got " + server.to_string() + ")");
  // Future bytes after the key are ignored.
  EXPECT_TRUE(check_server_key_frame(
                  view(server_key_frame("44455250f09f9491" + server.hex() + "0102")), server)
                  .ok());
}

TEST(ServerKeyFrame, RejectsWrongTypeBadMagicAndBadLengths) {
  const std::string key_hex = server_priv().public_key().hex();
  const auto send = frame_bytes(FrameType::kSendPacket, unhex(key_hex));
  auto wrong_type = check_server_key_frame(view(send), std::nullopt);
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_EQ(wrong_type.error().message, "expected ServerKey frame, got SendPacket");

  auto bad_magic =
      check_server_key_frame(view(server_key_frame("44455250f09f9492" + key_hex)), std::nullopt);
  ASSERT_FALSE(bad_magic.ok());
  EXPECT_NE(bad_magic.error().message.find("bad magic"), std::string::npos);

  auto short_frame = check_server_key_frame(
      view(server_key_frame("44455250f09f9491" + key_hex.substr(2))), std::nullopt);
  ASSERT_FALSE(short_frame.ok());
  EXPECT_EQ(short_frame.error().message, "ServerKey frame of 39 bytes, want 40..1024");

  auto long_frame = check_server_key_frame(
      view(server_key_frame("44455250f09f9491" + key_hex + std::string(2 * 985, '0'))),
      std::nullopt);
  ASSERT_FALSE(long_frame.ok());
  EXPECT_EQ(long_frame.error().message, "ServerKey frame of 1025 bytes, want 40..1024");
  for (const auto* r : {&wrong_type, &bad_magic, &short_frame, &long_frame}) {
    EXPECT_EQ(r->error().kind, ErrorKind::kProtocol);
  }
}

}  // namespace
}  // namespace derp
