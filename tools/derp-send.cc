// derp-send: send one packet to a peer through a DERP relay.
//   derp-send SERVER --to nodekey:HEX (--data STR | --file F | stdin) [--key-file F] [--json]
// Without --key-file a fresh ephemeral key is used; the key used is always reported.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <variant>

#include "common/cli.h"
#include "common/client_setup.h"
#include "common/exit_codes.h"
#include "common/json_output.h"

namespace {

// Whether the relay said, among the messages already read, that `peer` is not connected
// (PeerGone(NotHere) for a disco-shaped packet). Drains what is queued; waits at most `grace`.
derp::Result<bool> relay_said_gone(derp::Client& c, const derp::NodePublic& peer,
                                   std::chrono::milliseconds grace) {
  const auto until = std::chrono::steady_clock::now() + grace;
  bool gone = false;
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until -
                                                                   std::chrono::steady_clock::now());
    auto m = c.recv(std::max(left, std::chrono::milliseconds(1)));
    if (!m) {
      if (m.error().kind == derp::ErrorKind::kTimeout) return gone;
      return m.error();
    }
    if (auto* g = std::get_if<derp::PeerGoneMessage>(&*m); g && g->peer == peer) gone = true;
  }
}

derp::Result<std::vector<uint8_t>> read_all(std::istream& in, const std::string& what) {
  std::vector<uint8_t> out;
  char buf[16384];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    out.insert(out.end(), buf, buf + in.gcount());
    if (out.size() > derp::kMaxPacketSize) break;  // enough to know it is too big
  }
  if (in.bad()) return derp::Error(derp::ErrorKind::kUsage, "cannot read " + what);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace derp;
  using namespace derp::tools;

  ToolCli cli("derp-send", "Send one packet to a peer through a DERP relay");
  cli.add_server();
  cli.add_server_key();
  cli.add_key_file("Our key (derper's JSON key file); default: a fresh ephemeral key");
  cli.add_json();
  cli.add_timeout("10s", "Connect timeout");
  std::string to_text, data_text, file;
  bool expect_peer = false;
  cli.app().add_flag("--expect-peer", expect_peer,
                     "Exit 1 (sending nothing) when the relay says the peer is not connected: "
                     "sends a 62-byte disco-shaped presence check first");
  cli.app()
      .add_option("--to", to_text, "Destination public key (nodekey:HEX)")
      ->type_name("KEY")
      ->required();
  auto* data_opt = cli.app().add_option(
      "--data", data_text, "Packet payload (text); without --data or --file: read from stdin");
  cli.app()
      .add_option("--file", file, "Read the payload from FILE")
      ->type_name("FILE")
      ->excludes(data_opt);
  cli.set_manual({
      .description =
          "derp-send connects to a relay, sends one packet to the peer --to names, and confirms "
          "with a Ping/Pong that the relay has read it before it exits. The payload is --data, "
          "the contents of --file, or else standard input; at most 65536 bytes.\n\n"
          "Without --key-file the packet comes from a fresh ephemeral key. --timeout bounds the "
          "connect.\n\n"
          "A relay drops a packet for a key that is not connected, and says so (PeerGone) only "
          "when the packet looks like a disco message; derp-send then warns on stderr (exit 0). "
          "--expect-peer makes it a check for CI: a presence check of that shape goes first (the "
          "peer receives it too), and exit 1 when the relay answers that the peer is not there.",
      .examples = {{"Send a text to bob, who runs derp-recv with his key:",
                    "derp-send http://127.0.0.1:3340 --key-file alice.key --to nodekey:<bob's key> "
                    "--data 'hi bob'"},
                   {"Send a file's contents and report as JSON:",
                    "derp-send http://127.0.0.1:3340 --to nodekey:<bob's key> --file payload.bin "
                    "--json"}},
      .environment = {derp_http_environment()},
  });
  if (auto code = cli.parse(argc, argv)) return *code;

  auto dst = NodePublic::parse_any(to_text);
  if (!dst) return cli.fail(dst.error().wrap("--to"));

  std::vector<uint8_t> payload;
  if (!data_text.empty() || cli.app().count("--data") > 0) {
    payload.assign(data_text.begin(), data_text.end());
  } else if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return cli.fail(Error(ErrorKind::kUsage, "cannot open " + file));
    auto r = read_all(in, file);
    if (!r) return cli.fail(r.error());
    payload = std::move(*r);
  } else {
    auto r = read_all(std::cin, "stdin");
    if (!r) return cli.fail(r.error());
    payload = std::move(*r);
  }
  if (payload.size() > kMaxPacketSize) {
    return cli.fail(
        Error(ErrorKind::kUsage, "payload is larger than the 65536-byte DERP packet limit"));
  }

  auto tc = make_client(cli, /*connect=*/false);
  if (!tc) return cli.fail(tc.error());
  Client& c = *tc->client;
  const bool ephemeral = tc->ephemeral;
  const NodePrivate* key = &tc->key;
  const std::string from = key->public_key().to_string();
  auto report = [&] {
    auto j = json_ok();
    j["from"] = from;
    j["ephemeral_key"] = ephemeral;
    j["to"] = dst->to_string();
    j["len"] = payload.size();
    j["server"] = c.server_url();
    j["server_key"] = c.server_public_key().to_string();
    return j;
  };
  const std::string gone_text = "peer " + dst->to_string() + " is not connected to this relay";
  // derper writes PeerGone and Pong from different queues: a moment more for a PeerGone that
  // trails the Pong.
  constexpr std::chrono::milliseconds kGoneGrace{100};
  if (expect_peer) {
    if (auto sent = c.send(*dst, presence_check_payload()); !sent) return cli.fail(sent.error());
    if (auto pong = c.ping(cli.timeout()); !pong) return cli.fail(pong.error());
    auto gone = relay_said_gone(c, *dst, kGoneGrace);
    if (!gone) return cli.fail(gone.error());
    if (*gone) {
      auto j = report();
      j["len"] = 0;
      j["peer_present"] = false;
      const int code = cli.fail_check(gone_text + " (nothing sent)",
                                      "start the receiver (e.g. derp-recv) with that key on the "
                                      "same relay",
                                      &j);
      if (cli.json()) print_json_line(j);
      return code;
    }
  }
  auto sent = c.send(*dst, payload);
  if (!sent) return cli.fail(sent.error());
  // The relay reads frames in order: a ping answered means our packet was taken in.
  auto flushed = c.ping(cli.timeout());
  if (!flushed) return cli.fail(flushed.error());
  // Only a disco-shaped packet gets an answer when the peer is not there.
  if (!expect_peer && looks_like_disco(payload)) {
    auto gone = relay_said_gone(c, *dst, kGoneGrace);
    if (gone && *gone) cli.note("warning: " + gone_text + ": the relay dropped the packet");
  }

  if (cli.json()) {
    auto j = report();
    if (expect_peer) j["peer_present"] = true;
    print_json_line(j);
  } else {
    std::cout << "sent " << payload.size() << " bytes from " << from
              << (ephemeral ? " (ephemeral key)" : "") << " to " << dst->to_string() << " via "
              << c.server_url() << "\n";
  }
  c.close();
  return kExitOk;
}
