// derp-ping: round trips to a relay, printed like ping(8).
//   derp-ping SERVER [--count N] [--interval 1s] [--timeout 5s] [--json] [--assert EXPR]
//   derp-ping SERVER --peer nodekey:HEX [--size 64] ...
// Without --peer it times DERP Ping/Pong frames with the relay itself. With --peer it sends
// sequenced, timestamped packets THROUGH the relay to a peer running `derp-recv --echo` and
// times the echoes. Exit 0 when every probe was answered (or, with --assert, when every
// assertion holds), 1 when some were lost (or an assertion failed), 2 for bad flags, the layered
// code (3..9) when the connection could not be made.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <random>
#include <thread>

#include "common/assert.h"
#include "common/cli.h"
#include "common/client_setup.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"
#include "common/term.h"

namespace {

using Clock = std::chrono::steady_clock;

// Probe payload (--peer): magic, run id, sequence, send time; the rest is padding to --size.
constexpr char kMagic[8] = {'d', 'e', 'r', 'p', 'p', 'i', 'n', 'g'};
constexpr size_t kProbeHeader = 32;

// A relay answers a probe for an unknown key with nothing (it is not disco-shaped), so a run
// first sends the peer one presence check (common/client_setup.h) to learn whether the peer is
// connected at all; `derp-recv --echo` echoes it and the echo is skipped.
bool is_presence_check(const std::vector<uint8_t>& d) {
  return d == derp::tools::presence_check_payload();
}

void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v & 0xff);
    v >>= 8;
  }
}

uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  // Nearest rank: the smallest value with at least p% of samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

const std::vector<derp::tools::MetricSpec>& ping_metrics() {
  using derp::tools::MetricKind;
  static const std::vector<derp::tools::MetricSpec> kMetrics = {
      {"sent", MetricKind::kCount, false},   {"received", MetricKind::kCount, false},
      {"loss", MetricKind::kPercent, false}, {"min", MetricKind::kDuration, false},
      {"avg", MetricKind::kDuration, false}, {"max", MetricKind::kDuration, false},
      {"p50", MetricKind::kDuration, false}, {"p90", MetricKind::kDuration, false},
      {"p99", MetricKind::kDuration, false}, {"jitter", MetricKind::kDuration, false},
  };
  return kMetrics;
}

// One echo probe through the relay: send, then wait for our own packet to come back.
struct PeerProber {
  derp::Client& client;
  derp::NodePublic peer;
  size_t size;
  uint64_t run_id;
  bool peer_gone = false;  // the relay said the peer is not connected
  int64_t stray = 0;       // late echoes and unrelated packets
  bool presence_checked = false;

  derp::Result<std::chrono::nanoseconds> probe(uint64_t seq, std::chrono::milliseconds timeout) {
    using namespace derp;
    std::vector<uint8_t> payload(size, 0);
    std::memcpy(payload.data(), kMagic, sizeof kMagic);
    put_u64(payload.data() + 8, run_id);
    put_u64(payload.data() + 16, seq);
    const auto start = Clock::now();
    put_u64(payload.data() + 24, static_cast<uint64_t>(start.time_since_epoch().count()));
    for (size_t i = kProbeHeader; i < size; ++i) payload[i] = static_cast<uint8_t>(i);
    if (!presence_checked) {
      presence_checked = true;
      if (auto sent = client.send(peer, derp::tools::presence_check_payload()); !sent) return sent.error();
    }
    if (auto sent = client.send(peer, payload); !sent) return sent.error();
    const auto deadline = start + timeout;
    for (;;) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      auto m = client.recv(left);
      if (!m) {
        if (m.error().kind == ErrorKind::kTimeout) break;
        return m.error();
      }
      if (auto* gone = std::get_if<PeerGoneMessage>(&*m); gone && gone->peer == peer) {
        peer_gone = true;
        return Error(ErrorKind::kTimeout,
                     "peer " + peer.to_string() + " is not connected to this relay");
      }
      auto* pkt = std::get_if<ReceivedPacket>(&*m);
      if (!pkt) continue;
      if (pkt->src == peer && is_presence_check(pkt->data)) continue;  // its echo: not stray
      const auto now = Clock::now();
      const auto& d = pkt->data;
      if (pkt->src != peer || d.size() != size || std::memcmp(d.data(), kMagic, 8) != 0 ||
          get_u64(d.data() + 8) != run_id || get_u64(d.data() + 16) != seq) {
        ++stray;
        continue;
      }
      peer_gone = false;
      const auto sent_at = Clock::time_point(Clock::duration(get_u64(d.data() + 24)));
      return std::chrono::duration_cast<std::chrono::nanoseconds>(now - sent_at);
    }
    return Error(ErrorKind::kTimeout, "no echo within " + derp::tools::format_duration(timeout));
  }
};

}  // namespace

int main(int argc, char** argv) {
  using namespace derp;
  using namespace derp::tools;

  ToolCli cli("derp-ping", "Measure round trips to a relay (Ping/Pong) or through it to a peer");
  cli.add_server();
  cli.add_server_key();
  cli.add_read_timeout();
  cli.add_key_file("Our key (derper's JSON key file); default: a fresh ephemeral key");
  cli.add_json();
  cli.add_timeout("5s", "Wait this long for each pong or echo (and for the connect)");
  int64_t count = 4;
  std::string interval_text = "1s";
  std::string peer_text;
  size_t size = 64;
  std::vector<std::string> assert_texts;
  cli.app()
      .add_option("--count,-c", count, "Number of pings")
      ->type_name("N")
      ->check(at_least(1))
      ->capture_default_str();
  cli.app()
      .add_option("--interval,-i", interval_text, "Time between pings")
      ->type_name("DURATION")
      ->default_str("1s");
  cli.app()
      .add_option("--peer", peer_text,
                  "Measure the round trip through the relay to this peer (nodekey:HEX), "
                  "which must run `derp-recv --echo` on the same relay")
      ->type_name("KEY");
  auto* size_opt = cli.app()
                       .add_option("--size,-s", size, "--peer: packet size in bytes (32..65536)")
                       ->type_name("BYTES")
                       ->check(in_range(int64_t{kProbeHeader}, int64_t{kMaxPacketSize}))
                       ->capture_default_str();
  cli.app()
      .add_option("--assert", assert_texts,
                  "CI gate, e.g. 'loss==0,p99<5ms' (repeatable; all must hold). Metrics: " +
                      describe_metrics(ping_metrics()))
      ->type_name("EXPR")
      ->allow_extra_args(false);  // one EXPR per --assert: SERVER may follow it
  cli.set_manual({
      .description =
          "Without --peer, derp-ping sends DERP Ping frames to the relay and times the Pongs, "
          "like ping(8): \"pong from http://127.0.0.1:3340/derp seq=1 time=0.213 ms\". Then it "
          "prints sent, received, loss and the round trips' min/avg/max/p50/p90/p99 and jitter.\n\n"
          "With --peer nodekey:HEX it measures the round trip through the relay to a peer "
          "running \"derp-recv --echo\" on the same relay: each probe is a DERP packet of --size "
          "bytes, and only its echo counts. A peer the relay does not know is reported as not "
          "connected.\n\n"
          "--timeout bounds the connect and each pong or echo; --interval paces the probes. The "
          "exit status is 0 when every probe was answered and 1 when any was lost; with --assert "
          "the assertions alone decide between 0 and 1.",
      .examples =
          {{"Five round trips to a relay on loopback, 200 ms apart:",
            "derp-ping http://127.0.0.1:3340 --count 5 --interval 200ms"},
           {"A CI gate over a DERP map region, with the result as JSON:",
            "derp-ping --derp-map map.json --region 1 --assert 'loss==0,p99<5ms' --json"},
           {"Through the relay to a peer that runs derp-recv --echo:",
            "derp-ping http://127.0.0.1:3340 --peer nodekey:<the peer's key> --count 20"}},
      .environment = {derp_http_environment()},
  });
  if (auto code = cli.parse(argc, argv)) return *code;
  auto interval = parse_duration(interval_text);
  if (!interval) return cli.fail(interval.error().wrap("--interval"));
  std::optional<NodePublic> peer;
  if (!peer_text.empty()) {
    auto p = NodePublic::parse_any(peer_text);
    if (!p) return cli.fail(p.error().wrap("--peer"));
    peer = *p;
  } else if (size_opt->count() > 0) {
    return cli.fail(Error(ErrorKind::kUsage,
                          "--size needs --peer (DERP Ping frames to the relay are 8 bytes)"));
  }
  std::vector<Assertion> asserts;
  if (!assert_texts.empty()) {
    auto a = parse_asserts(std::span<const std::string>(assert_texts), ping_metrics());
    if (!a) return cli.fail(a.error());
    asserts = std::move(*a);
  }

  auto tc = make_client(cli, /*connect=*/true);
  if (!tc) return cli.fail(tc.error());
  Client& c = *tc->client;

  const std::string where = c.server_url();
  const std::string target = peer ? peer->to_string() : where;
  if (!cli.json()) {
    if (peer) {
      std::cout << "PING " << target << " via " << where << " (" << size << " bytes)\n";
    } else {
      std::cout << "PING " << where << " (" << c.server_public_key().to_string() << ")\n";
    }
    std::cout << std::flush;
  }
  std::random_device rd;
  PeerProber prober{c, peer.value_or(NodePublic{}), size,
                    (static_cast<uint64_t>(rd()) << 32) | rd()};
  std::vector<double> rtts;
  int64_t sent = 0;
  std::optional<Error> last_error;
  for (int64_t seq = 1; seq <= count; ++seq) {
    if (seq > 1) std::this_thread::sleep_for(*interval);  // pacing, not waiting for an event
    ++sent;
    auto rtt =
        peer ? prober.probe(static_cast<uint64_t>(seq), cli.timeout()) : c.ping(cli.timeout());
    if (!rtt) {
      last_error = rtt.error();
      if (!cli.json()) {
        std::cout << "no " << (peer ? "echo" : "pong") << " seq=" << seq << ": "
                  << rtt.error().message << "\n"
                  << std::flush;
      }
      continue;
    }
    double ms = static_cast<double>(rtt->count()) / 1e6;
    rtts.push_back(ms);
    if (!cli.json()) {
      std::printf("%s from %s seq=%lld time=%.3f ms\n", peer ? "echo" : "pong", target.c_str(),
                  static_cast<long long>(seq), ms);
      std::fflush(stdout);
    }
  }
  const int64_t received = static_cast<int64_t>(rtts.size());
  const double loss =
      sent == 0 ? 0 : 100.0 * static_cast<double>(sent - received) / static_cast<double>(sent);
  std::vector<double> sorted = rtts;
  std::sort(sorted.begin(), sorted.end());
  double sum = 0;
  for (double r : rtts) sum += r;
  // Jitter: the mean absolute difference between consecutive round trips.
  double jitter_sum = 0;
  for (size_t i = 1; i < rtts.size(); ++i) jitter_sum += std::fabs(rtts[i] - rtts[i - 1]);
  const bool have = !sorted.empty();
  std::map<std::string, std::optional<double>, std::less<>> metrics = {
      {"sent", static_cast<double>(sent)},
      {"received", static_cast<double>(received)},
      {"loss", loss},
      {"min", have ? std::optional<double>(sorted.front()) : std::nullopt},
      {"avg",
       have ? std::optional<double>(sum / static_cast<double>(sorted.size())) : std::nullopt},
      {"max", have ? std::optional<double>(sorted.back()) : std::nullopt},
      {"p50", have ? std::optional<double>(percentile(sorted, 50)) : std::nullopt},
      {"p90", have ? std::optional<double>(percentile(sorted, 90)) : std::nullopt},
      {"p99", have ? std::optional<double>(percentile(sorted, 99)) : std::nullopt},
      {"jitter", rtts.size() >= 2
                     ? std::optional<double>(jitter_sum / static_cast<double>(rtts.size() - 1))
                     : std::nullopt},
  };
  auto metric = [&](const char* name) { return metrics.at(name).value_or(0); };
  const bool all = received == sent;
  AssertReport report = evaluate_asserts(
      asserts, [&](std::string_view name, std::string_view) -> std::optional<double> {
        auto it = metrics.find(name);
        return it == metrics.end() ? std::nullopt : it->second;
      });
  // With --assert the assertions decide (a tolerated loss is the caller's call); without, any
  // lost probe fails the run.
  const bool ok = asserts.empty() ? all : report.ok();

  std::string why;
  if (!report.ok()) {
    why = report.summary();
  } else if (!ok) {
    why = std::to_string(sent - received) + " of " + std::to_string(sent) + " " +
          (peer ? "echoes" : "pongs") + " lost";
    if (peer && prober.peer_gone && received == 0) {
      // The relay answered the presence check with PeerGone(NotHere): say that first.
      why = "peer " + peer->to_string() + " is not connected to this relay (" + why + ")";
    } else if (last_error) {
      why += " (last: " + last_error->message + ")";
    }
  }
  std::string hint;
  if (peer && prober.peer_gone && received == 0) {
    hint = "run `derp-recv --echo` with that key on the same relay";
  }

  nlohmann::json j = ok ? json_ok() : json_check_failed(why, hint);
  if (cli.json()) {
    j["server"] = where;
    j["server_key"] = c.server_public_key().to_string();
    if (peer) {
      j["peer"] = peer->to_string();
      j["size"] = size;
    }
    j["sent"] = sent;
    j["received"] = received;
    j["loss"] = loss;
    j["rtt_ms"] = {{"min", metric("min")},      {"avg", metric("avg")}, {"max", metric("max")},
                   {"p50", metric("p50")},      {"p90", metric("p90")}, {"p99", metric("p99")},
                   {"jitter", metric("jitter")}};
    j["samples_ms"] = rtts;
    if (!asserts.empty()) j["asserts"] = report.to_json();
    print_json_line(j);
  } else {
    std::printf("--- %s ping statistics ---\n", target.c_str());
    const Palette out = palette_for(STDOUT_FILENO, false, cli.no_color());
    const std::string loss_text = fmt::format("{:.1f}% loss", loss);
    std::printf("%lld sent, %lld received, %s\n", static_cast<long long>(sent),
                static_cast<long long>(received),
                (sent > 0 && received == sent ? out.good(loss_text) : out.bad(loss_text)).c_str());
    if (received > 0) {
      std::printf("rtt min/avg/max/p50/p90/p99/jitter = %.3f/%.3f/%.3f/%.3f/%.3f/%.3f/%.3f ms\n",
                  metric("min"), metric("avg"), metric("max"), metric("p50"), metric("p90"),
                  metric("p99"), metric("jitter"));
    }
    std::fflush(stdout);
  }
  c.close();
  // The one stderr line comes after the statistics.
  return ok ? kExitOk : cli.fail_check(why, hint, nullptr);
}
