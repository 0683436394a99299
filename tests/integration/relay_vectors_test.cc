// Server-side replay of the captured derper transcripts (tests/vectors/README.md, "(b) Server
// side"): the recorded client bytes go into our relay and what comes back is compared with
// what derper sent, except where PROTOCOL.md documents that the current derper differs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>

#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/server.h"
#include "support/relay_harness.h"
#include "support/vectors.h"

namespace derp::test {
namespace {

using json = nlohmann::json;

std::unique_ptr<Server> relay_for(const json& v, bool with_mesh = false) {
  ServerOptions o;
  o.private_key = private_key(v, "server");
  if (with_mesh) o.mesh_key = *MeshKey::parse(v.at("keys").at("mesh_key").get<std::string>());
  return start_relay(std::move(o));
}

// Writes a recorded client stream and checks the relay's reply up to ServerInfo: the exact
// recorded 101 head, the exact ServerKey frame, and a ServerInfo that opens to {"version":2}.
// Only the first `c2s_len` bytes of the client stream are written when given.
void replay_handshake(const Server& s, const json& v, const json& conn,
                      std::unique_ptr<RawConn>* raw_out, size_t c2s_len = SIZE_MAX) {
  auto raw = std::make_unique<RawConn>(s.port());
  auto c2s = c2s_raw(conn);
  c2s.resize(std::min(c2s.size(), c2s_len));
  EXPECT_TRUE(raw->write(c2s));
  const std::string want_head = conn.at("http_response").get<std::string>();
  auto head = raw->read_http_head();
  EXPECT_EQ(head.value_or("<none>"), want_head);
  const auto want_key = s2c_raw(conn);
  const size_t off = conn.at("s2c_derp_offset").get<size_t>();
  std::vector<uint8_t> want_server_key(want_key.begin() + static_cast<ptrdiff_t>(off),
                                       want_key.begin() + static_cast<ptrdiff_t>(off + 45));
  auto key_frame = raw->read_exact(45);
  EXPECT_EQ(key_frame.value_or(std::vector<uint8_t>{}), want_server_key);
  auto hdr = raw->read_exact(kFrameHeaderLen);
  EXPECT_TRUE(hdr.has_value());
  if (!hdr) return;
  const FrameHeader h = read_frame_header(hdr->data());
  EXPECT_EQ(h.type, static_cast<uint8_t>(FrameType::kServerInfo));
  auto payload = raw->read_exact(h.length);
  EXPECT_TRUE(payload.has_value());
  if (!payload) return;
  const std::string who = conn.at("client_key_name").get<std::string>();
  auto opened = open_from(private_key(v, who), s.public_key(), *payload);
  EXPECT_TRUE(opened.ok()) << (opened ? "" : opened.error().message);
  if (opened) {
    EXPECT_EQ(std::string(opened->begin(), opened->end()), "{\"version\":2}");
  }
  *raw_out = std::move(raw);
}

// Reads one frame from a raw connection.
std::optional<Frame> next_frame(RawConn& raw) {
  auto hdr = raw.read_exact(kFrameHeaderLen);
  if (!hdr) return std::nullopt;
  const FrameHeader h = read_frame_header(hdr->data());
  auto p = raw.read_exact(h.length);
  if (!p) return std::nullopt;
  return Frame{h.type, *p};
}

std::optional<Frame> next_non_keepalive(RawConn& raw) {
  for (;;) {
    auto f = next_frame(raw);
    if (!f || f->frame_type() != FrameType::kKeepAlive) return f;
  }
}

std::vector<uint8_t> peer_gone_current(const NodePublic& k, uint8_t reason) {
  std::vector<uint8_t> p(k.bytes.begin(), k.bytes.end());
  p.push_back(reason);
  return frame_bytes(FrameType::kPeerGone, p);
}

std::vector<uint8_t> peer_present_bytes(const NodePublic& k, uint16_t port, uint8_t flags) {
  std::array<uint8_t, 16> ip{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  std::vector<uint8_t> out(kFrameHeaderLen + kPeerPresentLen);
  out.resize(encode_peer_present(out, k, ip, port, flags));
  return out;
}

TEST(RelayVectors, PingTranscriptGetsTheRecordedHandshakeAndEchoingPongs) {
  const json v = load_vector("ping");
  auto s = relay_for(v);
  ASSERT_TRUE(s);
  const json& conn = v.at("connections").at(0);
  const auto c2s = c2s_raw(conn);
  const auto& frames = conn.at("c2s_frames");
  ASSERT_EQ(frames.at(1).at("name"), "Ping");
  std::unique_ptr<RawConn> raw;
  // The client sent its pings 200 ms apart; all at once, the relay's single pending-pong slot
  // would (rightly) ignore the extra ones. So each goes out after the previous Pong.
  replay_handshake(*s, v, conn, &raw, frames.at(1).at("offset").get<size_t>());
  ASSERT_TRUE(raw);
  for (const json& f : frames) {
    if (f.at("name") != "Ping") continue;
    const size_t off = f.at("offset").get<size_t>();
    ASSERT_TRUE(raw->write(std::span<const uint8_t>(c2s).subspan(off, kFrameHeaderLen + 8)));
    auto pong = next_non_keepalive(*raw);
    ASSERT_TRUE(pong.has_value());
    EXPECT_EQ(pong->frame_type(), FrameType::kPong);
    EXPECT_EQ(pong->payload, frame_payload(f));
  }
  EXPECT_EQ(s->counters()["got_ping"], 3);
}

TEST(RelayVectors, SendRecvTranscriptDeliversRecordedBytesThenCurrentPeerGone) {
  const json v = load_vector("send_recv");
  auto s = relay_for(v);
  ASSERT_TRUE(s);
  const json& b = v.at("connections").at(0);
  const json& a = v.at("connections").at(1);
  ASSERT_EQ(b.at("client_key_name"), "client_B");
  std::unique_ptr<RawConn> rb, ra;
  replay_handshake(*s, v, b, &rb);
  ASSERT_TRUE(rb);
  replay_handshake(*s, v, a, &ra);
  ASSERT_TRUE(ra);
  ra->close();  // A leaves after its SendPacket

  std::vector<uint8_t> want_recv;
  for (const json& f : b.at("s2c_frames")) {
    if (f.at("name") == "RecvPacket") {
      auto h = unhex(f.at("header_hex").get<std::string>());
      auto p = frame_payload(f);
      want_recv = h;
      want_recv.insert(want_recv.end(), p.begin(), p.end());
    }
  }
  ASSERT_FALSE(want_recv.empty());
  auto recv = next_non_keepalive(*rb);
  ASSERT_TRUE(recv.has_value());
  EXPECT_EQ(recv->bytes(), want_recv);
  // The capture's derper sent the old 32-byte PeerGone; current derper appends the reason.
  auto gone = next_non_keepalive(*rb);
  ASSERT_TRUE(gone.has_value());
  EXPECT_EQ(gone->bytes(), peer_gone_current(public_key(v, "client_A"), 0x00));
}

TEST(RelayVectors, SendUnknownTranscriptGetsNotHereOnlyForTheDiscoPayload) {
  const json v = load_vector("send_unknown");
  auto s = relay_for(v);
  ASSERT_TRUE(s);
  const NodePublic nobody = public_key(v, "nobody");
  const auto& conns = v.at("connections");
  ASSERT_EQ(conns.size(), 2u);
  for (size_t i = 0; i < conns.size(); ++i) {
    std::unique_ptr<RawConn> raw;
    replay_handshake(*s, v, conns.at(i), &raw);
    ASSERT_TRUE(raw);
    // A Ping after the recorded stream is a barrier: whatever the relay answered to the
    // SendPacket comes before its Pong.
    const PingData ping{1, 2, 3, 4, 5, 6, 7, static_cast<uint8_t>(i)};
    ASSERT_TRUE(raw->write(frame_bytes(FrameType::kPing, ping)));
    std::vector<Frame> before;
    for (;;) {
      auto f = next_non_keepalive(*raw);
      ASSERT_TRUE(f.has_value());
      if (f->frame_type() == FrameType::kPong) break;
      before.push_back(*f);
    }
    if (i == 0) {
      EXPECT_TRUE(before.empty()) << "plain payload to an unknown key must get no reply";
    } else {
      // The capture's derper sent nothing; current derper (PROTOCOL.md §4.4) says NotHere.
      ASSERT_EQ(before.size(), 1u);
      EXPECT_EQ(before[0].bytes(), peer_gone_current(nobody, 0x01));
    }
  }
  auto c = s->counters();
  EXPECT_EQ(c["packets_dropped_reason_unknown_dest"], 2);
  EXPECT_EQ(c["packets_dropped_type_disco"], 1);
  EXPECT_EQ(c["packets_dropped_type_other"], 1);
}

TEST(RelayVectors, WatchTranscriptReportsPresenceAndDepartures) {
  const json v = load_vector("watch");
  auto s = relay_for(v, /*with_mesh=*/true);
  ASSERT_TRUE(s);
  const auto& conns = v.at("connections");
  const json& b = conns.at(0);
  const json& w = conns.at(1);
  const json& a = conns.at(2);
  ASSERT_EQ(w.at("client_key_name"), "watcher");
  std::unique_ptr<RawConn> rb, rw, ra;
  replay_handshake(*s, v, b, &rb);
  ASSERT_TRUE(rb);
  replay_handshake(*s, v, w, &rw);
  ASSERT_TRUE(rw);

  const NodePublic kb = public_key(v, "client_B");
  const NodePublic kw = public_key(v, "watcher");
  const NodePublic ka = public_key(v, "client_A");
  std::set<std::vector<uint8_t>> first,
      want_first = {peer_present_bytes(kb, rb->local_port(), peer_present_flags::kIsRegular),
                    peer_present_bytes(kw, rw->local_port(), peer_present_flags::kIsMeshPeer)};
  for (int i = 0; i < 2; ++i) {
    auto f = next_non_keepalive(*rw);
    ASSERT_TRUE(f.has_value());
    first.insert(f->bytes());
  }
  EXPECT_EQ(first, want_first);  // order is unspecified

  replay_handshake(*s, v, a, &ra);
  ASSERT_TRUE(ra);
  auto present_a = next_non_keepalive(*rw);
  ASSERT_TRUE(present_a.has_value());
  EXPECT_EQ(present_a->bytes(),
            peer_present_bytes(ka, ra->local_port(), peer_present_flags::kIsRegular));
  ra->close();
  auto gone_a = next_non_keepalive(*rw);
  ASSERT_TRUE(gone_a.has_value());
  EXPECT_EQ(gone_a->bytes(), peer_gone_current(ka, 0x00));
  rb->close();
  auto gone_b = next_non_keepalive(*rw);
  ASSERT_TRUE(gone_b.has_value());
  EXPECT_EQ(gone_b->bytes(), peer_gone_current(kb, 0x00));
}

// The recorded response minus its Date line.
std::string without_date(const std::string& response) {
  std::string out;
  size_t pos = 0;
  while (pos < response.size()) {
    size_t end = response.find("\r\n", pos);
    if (end == std::string::npos) {
      out += response.substr(pos);
      break;
    }
    std::string line = response.substr(pos, end + 2 - pos);
    if (line.rfind("Date: ", 0) != 0) out += line;
    pos = end + 2;
    if (line == "\r\n") {
      out += response.substr(pos);
      break;
    }
  }
  return out;
}

TEST(RelayVectors, HttpEndpointsAnswerAsRecordedOrAsCurrentDerper) {
  const json v = load_vector("http_endpoints");
  auto s = relay_for(v);
  ASSERT_TRUE(s);
  const std::string home_body =
      "<html><body>\n<h1>DERP</h1>\n<p>\n  This is a\n"
      "  <a href=\"https://tailscale.com/\">Tailscale</a>\n"
      "  <a href=\"https://pkg.go.dev/tailscale.com/derp\">DERP</a>\n  server.\n</p>\n";
  for (const json& conn : v.at("connections")) {
    const std::string req = conn.at("http_request").get<std::string>();
    SCOPED_TRACE(req.substr(0, req.find("\r\n")));
    std::string want = without_date(conn.at("http_response").get<std::string>());
    if (req.rfind("GET /derp/latency-check ", 0) == 0) {
      // Not a route in the captured v1.36 derper (home page); current derper: like the probe.
      want = "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 0\r\n\r\n";
    } else if (req.rfind("GET / ", 0) == 0) {
      // derper's home text first, then our status section (docs/CLI.md, derp-serve "/").
      RawConn raw(s->port());
      ASSERT_TRUE(raw.write(req));
      auto got = raw.read_http_response();
      ASSERT_TRUE(got.has_value());
      const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n";
      EXPECT_EQ(without_date(*got).rfind(head, 0), 0u) << *got;
      const std::string body = got->substr(got->find("\r\n\r\n") + 4);
      EXPECT_EQ(body.rfind(home_body, 0), 0u) << body;
      EXPECT_NE(body.find("<h2>Status</h2>"), std::string::npos) << body;
      continue;
    } else if (req.rfind("GET /generate_204 ", 0) == 0) {
      // PROTOCOL.md §6.5: the current derper adds Cache-Control to every 204.
      want.insert(want.find("\r\n") + 2,
                  "Cache-Control: no-cache, no-store, must-revalidate, no-transform, "
                  "max-age=0\r\n");
    } else if (req.find("Sec-WebSocket-Protocol: derp") != std::string::npos) {
      // DERP over WebSocket (PROTOCOL.md §6.4): the same 101 fields as derper (Beast orders
      // them its own way and adds Server), then the ServerKey frame in one binary message.
      RawConn raw(s->port());
      ASSERT_TRUE(raw.write(req));
      auto head = raw.read_http_head();
      ASSERT_TRUE(head.has_value());
      EXPECT_EQ(head->rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << *head;
      for (const json& h : conn.at("response_headers")) {
        std::string line = h.get<std::string>();
        const std::string name = line.substr(0, line.find(':'));
        std::string lower_head = *head, lower_line = line;
        for (auto* t : {&lower_head, &lower_line}) {
          for (char& ch : *t) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        }
        EXPECT_NE(lower_head.find("\r\n" + lower_line + "\r\n"), std::string::npos)
            << name << " in " << *head;
      }
      auto msg = raw.read_exact(2 + kFrameHeaderLen + 40);
      ASSERT_TRUE(msg.has_value());
      EXPECT_EQ((*msg)[0], 0x82);  // FIN, binary
      EXPECT_EQ((*msg)[1], kFrameHeaderLen + 40);
      auto key = decode_server_key(std::span(*msg).subspan(2 + kFrameHeaderLen));
      ASSERT_TRUE(key.ok());
      EXPECT_EQ(*key, s->public_key());
      continue;
    }
    RawConn raw(s->port());
    ASSERT_TRUE(raw.write(req));
    auto got = raw.read_http_response();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(without_date(*got), want);
    EXPECT_NE(got->find("\r\nDate: "), std::string::npos);
  }
}

TEST(RelayVectors, KeepAliveConnectionServesSeveralRequests) {
  ServerOptions o;
  auto s = start_relay(o);
  ASSERT_TRUE(s);
  RawConn raw(s->port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(raw.write("GET /derp/probe HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto got = raw.read_http_response();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  }
  ASSERT_TRUE(raw.write("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto got = raw.read_http_response();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u);
}

}  // namespace
}  // namespace derp::test
