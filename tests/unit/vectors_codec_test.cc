// The codec against bytes captured from Tailscale's derper v1.36.2 and Go client
// (tests/vectors/README.md): readers, handshake boxes and encoders must agree with them.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "derp/frame.h"
#include "derp/handshake.h"
#include "support/vectors.h"

namespace derp {
namespace {

using FrameReaderRole = FrameReader::Role;
using nlohmann::json;
using test::hexs;
using test::unhex;

struct Got {
  uint8_t type;
  std::string payload_hex;
  bool operator==(const Got&) const = default;
};

void PrintTo(const Got& g, std::ostream* os) {
  *os << frame_type_name(g.type) << "(" << g.payload_hex.size() / 2 << " bytes)";
}

// Every DERP connection of every vector file, with the file it came from.
struct Conn {
  std::string file;
  size_t index;
  json vector;
  json conn;
};

std::vector<Conn> all_connections() {
  std::vector<Conn> out;
  for (const auto& name : test::vector_names()) {
    json v = test::load_vector(name);
    const auto& conns = v.at("connections");
    for (size_t i = 0; i < conns.size(); ++i) {
      if (test::is_derp_connection(conns[i])) out.push_back({name, i, v, conns[i]});
    }
  }
  return out;
}

std::string where(const Conn& c) { return c.file + " connection " + std::to_string(c.index); }

std::vector<Got> read_frames(FrameReaderRole role, const std::vector<uint8_t>& data, size_t piece) {
  FrameReader r(role);
  std::vector<Got> out;
  for (size_t off = 0; off < data.size(); off += piece) {
    std::span<const uint8_t> in(data.data() + off, std::min(piece, data.size() - off));
    for (;;) {
      auto f = r.next(in);
      if (!f.ok()) {
        ADD_FAILURE() << f.error().message;
        return out;
      }
      if (!*f) break;
      out.push_back({(*f)->type, hexs((*f)->payload)});
    }
  }
  EXPECT_EQ(r.buffered(), 0u) << "stream ends inside a frame";
  return out;
}

std::vector<Got> recorded(const json& frames, FrameReaderRole role) {
  std::vector<Got> out;
  for (const auto& f : frames) {
    const FrameHeader h{f.at("type").get<uint8_t>(), f.at("length").get<uint32_t>()};
    EXPECT_EQ(f.at("payload_hex").get<std::string>().size(), 2 * size_t{h.length});
    bool skip = false;
    EXPECT_TRUE(FrameReader::check_header(role, h, &skip).ok()) << f.at("name");
    if (!skip) out.push_back({h.type, f.at("payload_hex").get<std::string>()});
  }
  return out;
}

TEST(VectorsCodec, ThereAreDerpConnectionsToCheck) { EXPECT_GE(all_connections().size(), 8u); }

TEST(VectorsCodec, ClientReaderReproducesTheRecordedServerFrames) {
  for (const auto& c : all_connections()) {
    SCOPED_TRACE(where(c));
    const auto s2c = test::s2c_frames_bytes(c.conn);
    const auto want = recorded(c.conn.at("s2c_frames"), FrameReaderRole::kClient);
    ASSERT_FALSE(want.empty());
    EXPECT_EQ(read_frames(FrameReaderRole::kClient, s2c, SIZE_MAX), want);
    EXPECT_EQ(read_frames(FrameReaderRole::kClient, s2c, 1), want);
  }
}

TEST(VectorsCodec, ServerReaderReproducesTheRecordedClientFrames) {
  for (const auto& c : all_connections()) {
    SCOPED_TRACE(where(c));
    const auto c2s = test::c2s_frames_bytes(c.conn);
    const auto want = recorded(c.conn.at("c2s_frames"), FrameReaderRole::kServer);
    ASSERT_FALSE(want.empty());
    EXPECT_EQ(read_frames(FrameReaderRole::kServer, c2s, SIZE_MAX), want);
    EXPECT_EQ(read_frames(FrameReaderRole::kServer, c2s, 1), want);
  }
}

TEST(VectorsCodec, ClientInfoOpensWithTheServerKeyToTheRecordedJson) {
  int reencoded = 0;
  for (const auto& c : all_connections()) {
    SCOPED_TRACE(where(c));
    const NodePrivate server = test::private_key(c.vector, "server");
    const auto& frame = c.conn.at("c2s_frames").at(0);
    ASSERT_EQ(frame.at("type"), 0x02);
    const auto payload = test::frame_payload(frame);
    const std::string want_json = c.conn.at("client_info_json");

    auto opened = open_client_info(server, payload);
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    EXPECT_EQ(opened->client.to_string(), c.conn.at("client_public").get<std::string>());
    auto plain = open_from(server, opened->client, std::span(payload).subspan(kKeyLen));
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(std::string(plain->begin(), plain->end()), want_json);

    EXPECT_EQ(opened->info.version, 2);
    EXPECT_FALSE(opened->info.can_ack_pings);
    if (want_json.find("meshKey") != std::string::npos) {
      EXPECT_EQ(opened->info.mesh_key.hex(), c.vector.at("keys").at("mesh_key"));
    } else {
      EXPECT_TRUE(opened->info.mesh_key.is_zero());
    }

    // Same plaintext + the recorded nonce = the same bytes. (The old Go client put meshKey
    // after version; the current one, which we copy, puts it first.)
    if (client_info_to_json(opened->info) == want_json) {
      Nonce nonce;
      const auto n = unhex(frame.at("decoded").at("nonce_hex").get<std::string>());
      std::copy(n.begin(), n.end(), nonce.begin());
      const NodePrivate client =
          test::private_key(c.vector, c.conn.at("client_key_name").get<std::string>());
      const auto again = encode_client_info_frame(client, server.public_key(), opened->info, nonce);
      EXPECT_EQ(hexs(again), frame.at("header_hex").get<std::string>() +
                                 frame.at("payload_hex").get<std::string>());
      ++reencoded;
    }
  }
  EXPECT_GT(reencoded, 0);
}

TEST(VectorsCodec, ServerInfoOpensWithTheClientKeyToVersion2) {
  for (const auto& c : all_connections()) {
    SCOPED_TRACE(where(c));
    const NodePrivate server = test::private_key(c.vector, "server");
    const NodePrivate client =
        test::private_key(c.vector, c.conn.at("client_key_name").get<std::string>());
    int seen = 0;
    for (const auto& frame : c.conn.at("s2c_frames")) {
      if (frame.at("type") != 0x03) continue;
      ++seen;
      const auto payload = test::frame_payload(frame);
      auto info = open_server_info(client, server.public_key(), payload);
      ASSERT_TRUE(info.ok()) << info.error().message;
      EXPECT_EQ(info->version, 2);
      EXPECT_EQ(server_info_to_json(*info), c.conn.at("server_info_json"));
      // With the recorded nonce our encoder gives the relay's bytes exactly.
      Nonce nonce;
      const auto n = unhex(frame.at("decoded").at("nonce_hex").get<std::string>());
      std::copy(n.begin(), n.end(), nonce.begin());
      EXPECT_EQ(
          hexs(encode_server_info_frame(server, client.public_key(), *info, nonce)),
          frame.at("header_hex").get<std::string>() + frame.at("payload_hex").get<std::string>());
    }
    EXPECT_EQ(seen, 1);
  }
}

// Decodes one recorded frame, checks it against the transcript's "decoded" values and, for
// the deterministic types, encodes it again from those values. Returns whether it re-encoded.
bool check_frame(const json& frame) {
  const uint8_t type = frame.at("type");
  const auto payload = test::frame_payload(frame);
  const std::string want =
      frame.at("header_hex").get<std::string>() + frame.at("payload_hex").get<std::string>();
  const json& d = frame.at("decoded");
  std::vector<uint8_t> buf(kFrameHeaderLen + payload.size() + 64);
  size_t n = 0;
  switch (static_cast<FrameType>(type)) {
    case FrameType::kServerKey: {
      auto k = decode_server_key(payload);
      EXPECT_TRUE(k.ok());
      if (!k.ok()) return false;
      EXPECT_EQ(k->to_string(), d.at("server_public"));
      n = encode_server_key(buf, *k);
      break;
    }
    case FrameType::kSendPacket: {
      auto v = decode_send_packet(payload);
      EXPECT_TRUE(v.ok());
      if (!v.ok()) return false;
      EXPECT_EQ(v->dst.to_string(), d.at("dst"));
      EXPECT_EQ(v->data.size(), d.at("data_len"));
      EXPECT_EQ(looks_like_disco(v->data), d.at("looks_like_disco"));
      if (d.contains("data_text")) {
        EXPECT_EQ(std::string(v->data.begin(), v->data.end()), d.at("data_text"));
      }
      n = encode_send_packet(buf, v->dst, v->data);
      break;
    }
    case FrameType::kRecvPacket: {
      auto v = decode_recv_packet(payload);
      EXPECT_TRUE(v.ok());
      if (!v.ok()) return false;
      EXPECT_EQ(v->src.to_string(), d.at("src"));
      EXPECT_EQ(std::string(v->data.begin(), v->data.end()), d.at("data_text"));
      n = encode_recv_packet(buf, v->src, v->data);
      break;
    }
    case FrameType::kPeerGone: {
      auto v = decode_peer_gone(payload);
      EXPECT_TRUE(v.ok());
      if (!v.ok()) return false;
      EXPECT_EQ(v->peer.to_string(), d.at("peer"));
      // The old relay's form (key only) means Disconnected and is not what we send.
      if (payload.size() == kKeyLen) {
        EXPECT_EQ(v->reason, PeerGoneReason::kDisconnected);
        return false;
      }
      n = encode_peer_gone(buf, v->peer, v->reason);
      break;
    }
    case FrameType::kPeerPresent: {
      auto v = decode_peer_present(payload);
      EXPECT_TRUE(v.ok());
      if (!v.ok()) return false;
      EXPECT_EQ(v->peer.to_string(), d.at("peer"));
      if (payload.size() != kPeerPresentLen) {
        EXPECT_EQ(v->has_endpoint, payload.size() >= 50);
        return false;
      }
      n = encode_peer_present(buf, v->peer, v->ip16, v->port, v->flags);
      break;
    }
    case FrameType::kNotePreferred: {
      auto v = decode_note_preferred(payload);
      EXPECT_TRUE(v.ok());
      if (!v.ok()) return false;
      EXPECT_EQ(*v, d.at("preferred"));
      n = encode_note_preferred(buf, *v);
      break;
    }
    case FrameType::kWatchConns:
      n = encode_watch_conns(buf);
      break;
    case FrameType::kPing:
    case FrameType::kPong: {
      auto v = decode_ping(payload);
      EXPECT_TRUE(v.ok());
      if (!v.ok()) return false;
      EXPECT_EQ(hexs(*v), d.at("data_hex"));
      n = type == 0x12 ? encode_ping(buf, *v) : encode_pong(buf, *v);
      break;
    }
    default:
      return false;  // ClientInfo / ServerInfo have their own tests
  }
  buf.resize(n);
  EXPECT_EQ(hexs(buf), want) << frame.at("name");
  return true;
}

TEST(VectorsCodec, DeterministicFramesDecodeAndEncodeBackToTheSameBytes) {
  std::set<std::string> reencoded;
  for (const auto& c : all_connections()) {
    SCOPED_TRACE(where(c));
    for (const char* dir : {"c2s_frames", "s2c_frames"}) {
      for (const auto& frame : c.conn.at(dir)) {
        SCOPED_TRACE(frame.at("name").get<std::string>() + " at offset " +
                     std::to_string(frame.at("offset").get<size_t>()));
        if (check_frame(frame)) reencoded.insert(frame.at("name"));
      }
    }
  }
  // Every deterministic type that the captures contain was covered.
  for (const char* name :
       {"ServerKey", "SendPacket", "RecvPacket", "NotePreferred", "WatchConns", "Ping", "Pong"}) {
    EXPECT_TRUE(reencoded.count(name)) << name;
  }
}

TEST(VectorsCodec, ServerKeyFramePassesTheClientCheckPinnedToTheServer) {
  for (const auto& c : all_connections()) {
    SCOPED_TRACE(where(c));
    const auto s2c = test::s2c_frames_bytes(c.conn);
    FrameReader r(FrameReaderRole::kClient);
    std::span<const uint8_t> in(s2c);
    auto first = r.next(in);
    ASSERT_TRUE(first.ok() && *first);
    auto k = check_server_key_frame(**first, test::public_key(c.vector, "server"));
    ASSERT_TRUE(k.ok()) << k.error().message;
  }
}

}  // namespace
}  // namespace derp
