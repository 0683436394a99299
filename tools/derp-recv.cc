// derp-recv: receive packets through a DERP relay and print them.
//   derp-recv SERVER [--key-file F] [--count N] [--timeout 5s] [--json] [--echo]
// Exit 0 after N packets (or, with --count 0, at the timeout); 8 when the timeout comes first.
// The timeout counts from "ready" for the whole run. Prints a "ready" line on stderr (or a JSON
// line with "event": "ready") once connected, so scripts know when to send.
// --echo makes it the far end of `derp-ping --peer`: every packet goes back to its source, and
// unless --count/--timeout are given it serves until SIGINT/SIGTERM.
#include <csignal>
#include <iostream>

#include "common/cli.h"
#include "common/client_setup.h"
#include "common/exit_codes.h"
#include "common/json_output.h"

namespace {

volatile std::sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

}  // namespace

int main(int argc, char** argv) {
  using namespace derp;
  using namespace derp::tools;
  using Clock = std::chrono::steady_clock;

  ToolCli cli("derp-recv", "Receive packets through a DERP relay and print them");
  cli.add_server();
  cli.add_server_key();
  cli.add_read_timeout();
  cli.add_key_file("Our key (derper's JSON key file); default: a fresh ephemeral key");
  cli.add_json();
  cli.add_timeout("5s", "Give up this long after ready (also the connect timeout)");
  int64_t count = 1;
  bool echo = false;
  cli.app()
      .add_option("--count,-n", count, "Exit after N packets (0 = until the timeout)")
      ->type_name("N")
      ->check(at_least(0))
      ->capture_default_str();
  cli.app().add_flag("--echo", echo, "Send every packet back to its source");
  cli.set_manual({
      .description =
          "derp-recv connects to a relay and prints each packet it receives: the source key and "
          "the payload (as text when it is printable UTF-8, else in hex). Once connected it "
          "prints a ready line on standard error, \"derp-recv: ready as nodekey:... on URL\" "
          "(with --json a {\"event\":\"ready\"} line on standard output), so that a script knows "
          "when to send.\n\n"
          "--count N exits 0 after N packets; --timeout counts from ready for the whole run, "
          "and exit status 8 says the N packets did not arrive in time (with --count 0 it "
          "receives until the timeout and exits 0).\n\n"
          "--echo sends every packet back to its source: the far end of derp-ping --peer. With "
          "--echo and neither --count nor --timeout it serves until SIGINT or SIGTERM.",
      .examples = {{"Receive one packet as bob, as JSON lines:",
                    "derp-recv http://127.0.0.1:3340 --key-file bob.key --count 1 --timeout 30s "
                    "--json"},
                   {"Echo packets back for derp-ping --peer until interrupted:",
                    "derp-recv http://127.0.0.1:3340 --key-file bob.key --echo"}},
      .environment = {derp_http_environment()},
  });
  if (auto code = cli.parse(argc, argv)) return *code;
  // An echo responder serves until stopped unless told otherwise.
  const bool forever = echo && cli.app().count("--timeout") == 0;
  if (echo && cli.app().count("--count") == 0) count = 0;

  auto tc = make_client(cli, /*connect=*/true);
  if (!tc) return cli.fail(tc.error());
  Client& c = *tc->client;
  const bool ephemeral = tc->ephemeral;
  const NodePrivate* key = &tc->key;

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const std::string me = key->public_key().to_string();
  if (cli.json()) {
    auto j = json_ok();
    j["event"] = "ready";
    j["key"] = me;
    j["ephemeral_key"] = ephemeral;
    j["server"] = c.server_url();
    j["server_key"] = c.server_public_key().to_string();
    print_json_line(j);
  }
  cli.note("ready as " + me + " on " + c.server_url());

  const auto deadline = Clock::now() + cli.timeout();
  int64_t got = 0;
  while (count == 0 || got < count) {
    if (g_interrupted) break;
    auto left =
        forever ? std::chrono::milliseconds(200)
                : std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    // Short waits so an interrupt is noticed promptly.
    auto m = c.recv(std::min(left, std::chrono::milliseconds(200)));
    if (!m) {
      if (m.error().kind == ErrorKind::kTimeout) continue;
      return cli.fail(m.error());
    }
    auto* pkt = std::get_if<ReceivedPacket>(&*m);
    if (!pkt) continue;
    ++got;
    if (cli.json()) {
      auto j = json_ok();
      j["event"] = "packet";
      j["src"] = pkt->src.to_string();
      j["len"] = pkt->data.size();
      j["data_hex"] = to_hex(pkt->data.data(), pkt->data.size());
      std::string_view text(reinterpret_cast<const char*>(pkt->data.data()), pkt->data.size());
      if (is_printable_utf8(text)) j["text"] = std::string(text);
      print_json_line(j);
    } else {
      std::cout << pkt->src.to_string() << " " << payload_for_humans(pkt->data) << "\n"
                << std::flush;
    }
    if (echo) {
      auto sent = c.send(pkt->src, pkt->data);
      if (!sent) return cli.fail(sent.error());
    }
  }
  if (count != 0 && got < count && !g_interrupted) {
    return cli.fail(Error(ErrorKind::kTimeout, "received " + std::to_string(got) + " of " +
                                                   std::to_string(count) + " packets before the " +
                                                   "timeout"));
  }
  if (cli.json()) {
    auto j = json_ok();
    j["event"] = "done";
    j["received"] = got;
    print_json_line(j);
  }
  c.close();
  return kExitOk;
}
