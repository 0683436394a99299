// derp-bench: load, latency, memory and connection-rate benchmarks against any DERP relay.
//   derp-bench SERVER [--pairs N] [--size B] [--duration 5s] (--window W | --rate R|max)
//   derp-bench SERVER --idle N [--server-pid PID]
//   derp-bench SERVER --connect-storm N [--concurrency C]
//   derp-bench --raw [--pairs N] [--size B] ...      (the machine's ceiling, no relay)
// SERVER may instead be --derp-map FILE|URL --region ID (the region's first usable node); any
// mode runs over --websocket and/or through --proxy URL (or HTTPS_PROXY / HTTP_PROXY).
// The load engine is tools/bench/: pairs of in-process clients (sender → relay → receiver) on
// Asio event loops, speaking DERP with libderp's codec. docs/CLI.md and docs/BENCHMARKS.md.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <thread>

#include "bench/load.h"
#include "common/assert.h"
#include "common/cli.h"
#include "common/client_setup.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"
#include "common/term.h"

namespace {

using namespace derp;
using namespace derp::tools;
using namespace derp::bench;

double ms(uint64_t ns) { return static_cast<double>(ns) / 1e6; }

nlohmann::json quantiles_ms(const Histogram& h) {
  return {{"p50", ms(h.quantile(0.50))}, {"p90", ms(h.quantile(0.90))},
          {"p99", ms(h.quantile(0.99))}, {"p999", ms(h.quantile(0.999))},
          {"max", ms(h.max())},          {"count", h.count()}};
}

std::string quantiles_text(const Histogram& h) {
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms",
                ms(h.quantile(0.50)), ms(h.quantile(0.90)), ms(h.quantile(0.99)),
                ms(h.quantile(0.999)), ms(h.max()));
  return buf;
}

// --assert metrics, per mode (an assertion on a metric the chosen mode does not measure is a
// usage error before anything runs).
enum class Mode { kLoad, kIdle, kStorm };

std::vector<MetricSpec> bench_metrics(Mode mode) {
  const auto count = MetricKind::kCount;
  const auto dur = MetricKind::kDuration;
  switch (mode) {
    case Mode::kIdle:
      return {{"connections", count}, {"server_bytes_per_conn", count},
              {"client_bytes_per_conn", count}, {"open_seconds", count}};
    case Mode::kStorm:
      return {{"connections", count}, {"failed", count},           {"conns_per_second", count},
              {"handshake_p50", dur}, {"handshake_p99", dur},      {"handshake_max", dur}};
    case Mode::kLoad:
      break;
  }
  return {{"sent_pps", count},  {"delivered_pps", count}, {"delivered_mbps", count},
          {"drop", MetricKind::kPercent},                 {"lost", count},
          {"stalls", count},    {"fairness", count},      {"p50", dur},
          {"p90", dur},         {"p99", dur},             {"p999", dur},
          {"max", dur},         {"ping_p50", dur},        {"ping_p99", dur},
          {"frames_per_write", count},                    {"relay_cpu_per_packet", dur},
          {"relay_cpu", MetricKind::kPercent}};
}

using Metrics = std::map<std::string, std::optional<double>, std::less<>>;

// Evaluates the assertions over `metrics`. Returns the report.
AssertReport check_asserts(const std::vector<Assertion>& asserts, const Metrics& metrics) {
  return evaluate_asserts(asserts,
                          [&](std::string_view name, std::string_view) -> std::optional<double> {
                            auto it = metrics.find(name);
                            return it == metrics.end() ? std::nullopt : it->second;
                          });
}

// Ends a run (docs/CLI.md "The failure rule"): what the mode itself found wrong (`failure`, ""
// when nothing) and the violated assertions make one check-failure line, exit 1; with --json,
// `j` gets the asserts (and the error) and is printed.
int finish(const ToolCli& cli, nlohmann::json& j, const std::string& failure,
           const std::vector<Assertion>& asserts, const AssertReport& report) {
  std::string why = failure;
  if (!report.ok()) why += (why.empty() ? "" : "; ") + report.summary();
  if (!asserts.empty()) j["asserts"] = report.to_json();
  const int code = why.empty() ? kExitOk : cli.fail_check(why, "", &j);
  if (cli.json()) print_json_line(j);
  return code;
}

// Where the run went: the URL, the transport, the proxy and the DERP map's node. In every mode's
// JSON ("server", "tls", "transport", "proxy", "region", "node"; null when not used).
void add_target_json(nlohmann::json& j, const Target* t) {
  auto or_null = [](const std::string& s) {
    return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
  };
  j["server"] = t ? nlohmann::json(t->url) : nlohmann::json(nullptr);
  j["tls"] = t && t->tls;
  j["transport"] = t ? nlohmann::json(t->transport()) : nlohmann::json("raw");
  j["proxy"] = t ? or_null(t->proxy) : nlohmann::json(nullptr);
  j["region"] = t && t->region != 0 ? nlohmann::json(t->region) : nlohmann::json(nullptr);
  j["node"] = t ? or_null(t->node) : nlohmann::json(nullptr);
}

// One line before a text run when the target is not simply SERVER over TCP/TLS.
void print_target(const Target& t) {
  if (!t.websocket && t.proxy.empty() && t.node.empty()) return;
  std::string line = "target " + t.url + " over " + t.transport();
  if (!t.node.empty()) {
    line += ", node " + t.node + " of region " + std::to_string(t.region) + " at " +
            (t.proxy.empty() ? t.endpoint.address().to_string() : t.host_port);
  }
  if (!t.proxy.empty()) line += ", through proxy " + t.proxy;
  std::printf("%s\n", line.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  ToolCli cli("derp-bench", "Benchmark a DERP relay: throughput, latency, memory, connection rate");
  cli.add_server(/*required=*/false);  // --raw takes none
  cli.app().get_option("SERVER")->required(false);
  cli.add_server_key();
  cli.add_json();
  LoadConfig cfg;
  int64_t pairs = 1, size = 1200, window = 32, threads = 1, idle = 0, storm = 0;
  int64_t concurrency = 64, server_pid = 0;
  std::string duration_text = "5s", warmup_text = "500ms", rate_text, ping_text;
  std::string write_mode = "batched";
  bool raw = false;
  std::vector<std::string> assert_texts;
  auto& app = cli.app();
  app.add_option("--pairs", pairs, "Sender → receiver client pairs")
      ->type_name("N")
      ->check(in_range(int64_t{1}, int64_t{5000}))
      ->capture_default_str();
  app.add_option("--size", size, "Packet payload bytes (16..65536)")
      ->type_name("BYTES")
      ->check(in_range(int64_t{16}, int64_t{65536}))
      ->capture_default_str();
  app.add_option("--duration", duration_text, "Measured time (load) or hold time (--idle)")
      ->type_name("DURATION")
      ->default_str("5s");
  app.add_option("--warmup", warmup_text, "Load before measuring starts")
      ->type_name("DURATION")
      ->default_str("500ms");
  auto* window_opt = app.add_option("--window", window,
                                    "Closed loop (the default mode): packets in flight per pair")
                         ->type_name("N")
                         ->check(in_range(int64_t{1}, int64_t{100000}));
  auto* rate_opt = app.add_option("--rate", rate_text,
                                  "Open loop: packets/s per pair, or 'max' (as fast as the "
                                  "sockets take)")
                       ->type_name("RATE");
  window_opt->excludes(rate_opt);
  app.add_option("--threads", threads, "Generator event loops (pairs spread over them)")
      ->type_name("N")
      ->check(in_range(int64_t{1}, int64_t{64}))
      ->capture_default_str();
  app.add_option("--ping-interval", ping_text,
                 "Also ping the relay from one more client at this interval during the run")
      ->type_name("DURATION");
  auto* idle_opt = app.add_option("--idle", idle, "Open and hold N idle connections")
                       ->type_name("N")
                       ->default_str("")  // 0: not this mode
                       ->check(in_range(int64_t{1}, int64_t{1000000}));
  app.add_option("--write-mode", write_mode,
                 "Load: 'batched' (every frame that is due in one write) or 'per-frame' (one "
                 "frame per write syscall, as Tailscale's Go client writes)")
      ->type_name("MODE")
      ->check(CLI::IsMember({"batched", "per-frame"}))
      ->capture_default_str();
  app.add_option("--server-pid", server_pid,
                 "The relay's pid: load reports its CPU per delivered packet (/proc/PID/stat), "
                 "--idle its RSS per connection (/proc/PID/status)")
      ->type_name("PID")
      ->default_str("")  // 0: none given
      ->check(at_least(1));
  auto* storm_opt = app.add_option("--connect-storm", storm,
                                   "Connect, handshake and close N connections; report conn/s")
                        ->type_name("N")
                        ->default_str("")  // 0: not this mode
                        ->check(in_range(int64_t{1}, int64_t{1000000}));
  app.add_option("--concurrency", concurrency, "--connect-storm: handshakes in flight")
      ->type_name("N")
      ->check(in_range(int64_t{1}, int64_t{10000}))
      ->capture_default_str();
  auto* raw_opt = app.add_flag("--raw", raw,
                               "The same traffic through an in-process plain TCP forwarder "
                               "(the machine's ceiling; no SERVER)");
  idle_opt->excludes(storm_opt)->excludes(raw_opt);
  storm_opt->excludes(raw_opt);
  app.add_option("--assert", assert_texts,
                 "Fail (exit 1) unless the results meet EXPR, e.g. 'delivered_pps>=100k,"
                 "drop==0,p99<5ms' (repeatable; metrics depend on the mode: docs/CLI.md)")
      ->type_name("EXPR")
      ->allow_extra_args(false);  // one EXPR per --assert: SERVER may follow it
  cli.set_manual({
      .description =
          "derp-bench benchmarks a DERP relay, derp-serve or Tailscale's derper. Its load "
          "engine is a lean one of its own: many connections per event loop, many frames per "
          "read and per write.\n\n"
          "The default mode is load: --pairs sender and receiver clients, both ends in this "
          "process, each pair keeping --window packets in flight (closed loop) or sending "
          "--rate packets per second (open loop; --rate max: as fast as the sockets take). "
          "After --warmup it measures for --duration and reports sent and delivered packets/s "
          "and Mbit/s, drops, one-way latency percentiles and the fairness between pairs. "
          "Senders write every frame that is due in one write (--write-mode batched); "
          "--write-mode per-frame writes one frame per syscall, as Tailscale's Go client does, "
          "the load real relays see. With --server-pid the run also reports the relay's CPU "
          "(user + system, from /proc) per delivered packet. "
          "--idle N opens and holds N connections and reports the memory per connection "
          "(the relay's with --server-pid); --connect-storm N reports connections per second "
          "and the handshake time; --raw sends the same traffic through an in-process plain "
          "TCP forwarder, the machine's ceiling, and takes no SERVER.\n\n"
          "The exit status is 0, or 1 when no packet was delivered or an --assert failed (the "
          "figures are still printed); connection failures exit by their layer.",
      .examples = {{"Ten pairs of 1200-byte packets for five seconds, as JSON:",
                    "derp-bench http://127.0.0.1:3340 --pairs 10 --size 1200 --duration 5s "
                    "--json"},
                   {"A CI gate on throughput and latency:",
                    "derp-bench http://127.0.0.1:3340 --pairs 10 --assert "
                    "'delivered_pps>=200k,drop==0,p99<20ms'"},
                   {"Relay CPU per packet under Go-client-shaped load:",
                    "derp-bench http://127.0.0.1:3340 --pairs 10 --size 64 --write-mode "
                    "per-frame --server-pid $(pgrep -n derp-serve)"},
                   {"Memory per idle connection of a local derp-serve:",
                    "derp-bench http://127.0.0.1:3340 --idle 1000 --server-pid $(pgrep -n "
                    "derp-serve)"}},
  });
  if (auto code = cli.parse(argc, argv)) return *code;

  const bool via_map = !cli.derp_map().empty();
  if (raw) {
    // The forwarder is in-process plain TCP: relay-side transports make no sense with it.
    std::string relay_flag = !cli.server().empty() ? "SERVER"
                             : via_map             ? "--derp-map"
                             : cli.websocket()     ? "--websocket"
                             : !cli.proxy().empty() ? "--proxy"
                                                    : "";
    if (!relay_flag.empty()) {
      return cli.fail(Error(ErrorKind::kUsage,
                            "--raw measures an in-process forwarder: drop " + relay_flag));
    }
  }
  if (!raw && cli.server().empty() && !via_map) {
    return cli.fail(
        Error(ErrorKind::kUsage, "SERVER is required (or --derp-map, or --raw) (see --help)"));
  }
  if (server_pid != 0 && (storm > 0 || raw)) {
    return cli.fail(Error(ErrorKind::kUsage, storm > 0 ? "--server-pid applies to load and --idle, "
                                                         "not --connect-storm"
                                                       : "--server-pid needs a relay, not --raw"));
  }
  const Mode mode = idle > 0 ? Mode::kIdle : storm > 0 ? Mode::kStorm : Mode::kLoad;
  std::vector<Assertion> asserts;
  if (!assert_texts.empty()) {
    auto a = parse_asserts(std::span<const std::string>(assert_texts), bench_metrics(mode));
    if (!a) return cli.fail(a.error());
    asserts = std::move(*a);
  }
  auto duration = parse_duration(duration_text);
  if (!duration) return cli.fail(duration.error().wrap("--duration"));
  auto warmup = parse_duration(warmup_text);
  if (!warmup) return cli.fail(warmup.error().wrap("--warmup"));
  if (duration->count() == 0 && idle == 0) {
    return cli.fail(Error(ErrorKind::kUsage, "--duration must be more than 0"));
  }
  cfg.pairs = static_cast<int>(pairs);
  cfg.size = static_cast<size_t>(size);
  cfg.duration = *duration;
  cfg.warmup = *warmup;
  cfg.window = static_cast<int>(window);
  cfg.threads = static_cast<int>(threads);
  cfg.per_frame = write_mode == "per-frame";
  if (server_pid != 0) cfg.server_pid = static_cast<pid_t>(server_pid);
  if (server_pid != 0 && idle == 0) {
    // Checked before the run: a pid that cannot be read would otherwise be a silent null.
    if (auto c = read_cpu_seconds(static_cast<pid_t>(server_pid)); !c) return cli.fail(c.error());
  }
  if (!rate_text.empty()) {
    if (rate_text == "max") {
      cfg.flood = true;
    } else {
      char* end = nullptr;
      cfg.rate = std::strtod(rate_text.c_str(), &end);
      if (end == rate_text.c_str() || *end != '\0' || !(cfg.rate > 0)) {
        return cli.fail(Error(ErrorKind::kUsage, "--rate: expected packets/s > 0 or 'max', got \"" +
                                                     rate_text + "\""));
      }
    }
  }
  if (!ping_text.empty()) {
    auto p = parse_positive_duration("--ping-interval", ping_text);
    if (!p) return cli.fail(p.error());
    if (raw) return cli.fail(Error(ErrorKind::kUsage, "--ping-interval needs a relay, not --raw"));
    cfg.ping_interval = *p;
  }

  std::optional<Target> target;
  if (!raw) {
    TargetOptions to;
    to.url = cli.server();
    if (via_map) {
      auto region = load_region(cli);
      if (!region) return cli.fail(region.error());
      to.region = std::move(*region);
    }
    to.ca_file = cli.ca_file();
    to.insecure = cli.insecure();
    to.cert_name = cli.cert_name();
    to.pin = cli.server_key();
    to.websocket = cli.websocket();
    to.proxy = cli.proxy();
    auto t = make_target(to);
    if (!t) return cli.fail(t.error());
    target = std::move(*t);
    if (!cli.json()) print_target(*target);
  }
  std::fflush(stdout);  // before the progress line shares the terminal
  auto progress = ProgressLine::for_stderr(cli.name(), cli.json());

  // ---- --idle
  if (idle > 0) {
    progress.start(fmt::format("idle: opening {} connections, then holding them {}", idle,
                               format_duration(cfg.duration)));
    auto r =
        run_idle(*target, static_cast<int>(idle), cfg.threads, cfg.duration,
                 server_pid ? std::optional<pid_t>(static_cast<pid_t>(server_pid)) : std::nullopt);
    progress.finish();
    if (!r) return cli.fail(r.error());
    const double n = static_cast<double>(r->connections);
    std::optional<double> per_conn;
    if (r->server_rss_before_kb && r->server_rss_after_kb) {
      per_conn = static_cast<double>(*r->server_rss_after_kb - *r->server_rss_before_kb) * 1024 / n;
    }
    const double self_per_conn =
        static_cast<double>(r->self_rss_after_kb - r->self_rss_before_kb) * 1024 / n;
    const AssertReport report = check_asserts(asserts,
                                              {{"connections", n},
                                               {"server_bytes_per_conn", per_conn},
                                               {"client_bytes_per_conn", self_per_conn},
                                               {"open_seconds", r->open_seconds}});
    nlohmann::json j = json_ok();
    if (cli.json()) {
      j["mode"] = "idle";
      add_target_json(j, &*target);
      j["connections"] = r->connections;
      j["open_seconds"] = r->open_seconds;
      j["server_rss_before_kb"] = r->server_rss_before_kb ? nlohmann::json(*r->server_rss_before_kb)
                                                          : nlohmann::json(nullptr);
      j["server_rss_after_kb"] = r->server_rss_after_kb ? nlohmann::json(*r->server_rss_after_kb)
                                                        : nlohmann::json(nullptr);
      j["server_bytes_per_conn"] = per_conn ? nlohmann::json(*per_conn) : nlohmann::json(nullptr);
      j["client_bytes_per_conn"] = self_per_conn;
    } else {
      std::printf("idle: %d connections to %s opened in %.2f s\n", r->connections,
                  target->url.c_str(), r->open_seconds);
      if (per_conn) {
        std::printf("relay RSS %lld kB -> %lld kB: %.0f bytes per connection\n",
                    static_cast<long long>(*r->server_rss_before_kb),
                    static_cast<long long>(*r->server_rss_after_kb), *per_conn);
      } else {
        std::printf("relay RSS: not measured (give --server-pid)\n");
      }
      std::printf("derp-bench's own RSS: %.0f bytes per connection\n", self_per_conn);
    }
    return finish(cli, j, "", asserts, report);
  }

  // ---- --connect-storm
  if (storm > 0) {
    progress.start(fmt::format("connect storm: {} connections, {} at a time", storm, concurrency));
    auto r = run_connect_storm(*target, static_cast<int>(storm), static_cast<int>(concurrency),
                               cfg.threads);
    progress.finish();
    if (!r) return cli.fail(r.error());
    const int ok = r->connections - r->failed;
    const double rate = static_cast<double>(ok) / r->seconds;
    const bool measured = r->handshake.count() > 0;
    auto hs = [&](double q) -> std::optional<double> {
      if (!measured) return std::nullopt;
      return ms(q >= 1 ? r->handshake.max() : r->handshake.quantile(q));
    };
    const AssertReport report = check_asserts(asserts,
                                              {{"connections", r->connections},
                                               {"failed", r->failed},
                                               {"conns_per_second", rate},
                                               {"handshake_p50", hs(0.50)},
                                               {"handshake_p99", hs(0.99)},
                                               {"handshake_max", hs(1)}});
    nlohmann::json j = json_ok();
    if (cli.json()) {
      j["mode"] = "connect_storm";
      add_target_json(j, &*target);
      j["connections"] = r->connections;
      j["failed"] = r->failed;
      j["seconds"] = r->seconds;
      j["conns_per_second"] = rate;
      j["handshake_ms"] = quantiles_ms(r->handshake);
    } else {
      std::printf("connect storm: %d connections (%d failed) to %s in %.2f s: %.0f conn/s\n",
                  r->connections, r->failed, target->url.c_str(), r->seconds, rate);
      std::printf("handshake  %s\n", quantiles_text(r->handshake).c_str());
      if (r->failed > 0) std::printf("first failure: %s\n", r->first_error.c_str());
    }
    return finish(cli, j,
                  r->failed == 0 ? ""
                                 : fmt::format("{} of {} connections failed (first: {})", r->failed,
                                               r->connections, r->first_error),
                  asserts, report);
  }

  // ---- load (relay or --raw)
  // The run is the warm-up and the measured time (plus connecting and the drain).
  progress.start(fmt::format("load: {} pair(s) x {} B, {} warm-up + {} measured", cfg.pairs,
                             cfg.size, format_duration(cfg.warmup), format_duration(cfg.duration)),
                 cfg.warmup + cfg.duration);
  auto r = run_load(target ? &*target : nullptr, cfg);
  progress.finish();
  if (!r) return cli.fail(r.error());
  const double secs = r->seconds;
  const double sent_pps = static_cast<double>(r->sent) / secs;
  const double deliv_pps = static_cast<double>(r->delivered) / secs;
  const double bits = static_cast<double>(cfg.size) * 8;
  const double drop_pct = r->total_sent == 0 ? 0
                                             : 100.0 * static_cast<double>(r->lost) /
                                                   static_cast<double>(r->total_sent);
  const double fairness = r->max_pair_pps > 0 ? r->min_pair_pps / r->max_pair_pps : 0;
  const std::string loop = cfg.flood ? "open (max)" : cfg.rate > 0 ? "open" : "closed";
  const std::string where = raw ? "raw TCP forwarder (in-process)" : target->url;
  const bool delivered_any = r->delivered > 0;
  const bool have_latency = r->latency.count() > 0;
  const bool have_ping = r->ping.count() > 0;
  const double frames_per_write =
      r->writes == 0 ? 0 : static_cast<double>(r->sent) / static_cast<double>(r->writes);
  // The relay's CPU per delivered packet (ms, as every duration metric) and its share of a core.
  std::optional<double> cpu_per_packet, cpu_share;
  if (r->server_cpu_seconds) {
    cpu_share = 100.0 * *r->server_cpu_seconds / secs;
    if (r->delivered > 0) {
      cpu_per_packet = *r->server_cpu_seconds * 1e3 / static_cast<double>(r->delivered);
    }
  }
  auto lat = [&](const Histogram& h, bool have, double q) -> std::optional<double> {
    if (!have) return std::nullopt;
    return ms(q >= 1 ? h.max() : h.quantile(q));
  };
  const AssertReport report = check_asserts(asserts,
                                            {{"sent_pps", sent_pps},
                                             {"delivered_pps", deliv_pps},
                                             {"delivered_mbps", deliv_pps * bits / 1e6},
                                             {"drop", drop_pct},
                                             {"lost", static_cast<double>(r->lost)},
                                             {"stalls", static_cast<double>(r->stalls)},
                                             {"fairness", fairness},
                                             {"p50", lat(r->latency, have_latency, 0.50)},
                                             {"p90", lat(r->latency, have_latency, 0.90)},
                                             {"p99", lat(r->latency, have_latency, 0.99)},
                                             {"p999", lat(r->latency, have_latency, 0.999)},
                                             {"max", lat(r->latency, have_latency, 1)},
                                             {"ping_p50", lat(r->ping, have_ping, 0.50)},
                                             {"ping_p99", lat(r->ping, have_ping, 0.99)},
                                             {"frames_per_write", frames_per_write},
                                             {"relay_cpu_per_packet", cpu_per_packet},
                                             {"relay_cpu", cpu_share}});
  nlohmann::json j = json_ok();
  if (cli.json()) {
    j["mode"] = raw ? "raw" : "load";
    add_target_json(j, raw ? nullptr : &*target);
    j["server_key"] = raw ? nlohmann::json(nullptr) : nlohmann::json(r->server_key);
    j["pairs"] = cfg.pairs;
    j["size"] = cfg.size;
    j["threads"] = cfg.threads;
    j["loop"] = cfg.flood || cfg.rate > 0 ? "open" : "closed";
    j["window"] = cfg.flood || cfg.rate > 0 ? nlohmann::json(nullptr) : nlohmann::json(cfg.window);
    j["rate"] = cfg.flood      ? nlohmann::json("max")
                : cfg.rate > 0 ? nlohmann::json(cfg.rate)
                               : nlohmann::json(nullptr);
    j["write_mode"] = write_mode;
    j["frames_per_write"] = frames_per_write;
    j["seconds"] = secs;
    j["relay_cpu_seconds"] =
        r->server_cpu_seconds ? nlohmann::json(*r->server_cpu_seconds) : nlohmann::json(nullptr);
    j["relay_cpu_us_per_packet"] =
        cpu_per_packet ? nlohmann::json(*cpu_per_packet * 1e3) : nlohmann::json(nullptr);
    j["relay_cpu_pct"] = cpu_share ? nlohmann::json(*cpu_share) : nlohmann::json(nullptr);
    j["bench_cpu_seconds"] = r->self_cpu_seconds;
    j["sent_pps"] = sent_pps;
    j["delivered_pps"] = deliv_pps;
    j["sent_mbps"] = sent_pps * bits / 1e6;
    j["delivered_mbps"] = deliv_pps * bits / 1e6;
    j["total_sent"] = r->total_sent;
    j["total_delivered"] = r->total_delivered;
    j["lost"] = r->lost;
    j["drop_pct"] = drop_pct;
    j["stalls"] = r->stalls;
    j["foreign"] = r->foreign;
    j["latency_ms"] = quantiles_ms(r->latency);
    j["fairness"] = {{"min_pair_pps", r->min_pair_pps},
                     {"max_pair_pps", r->max_pair_pps},
                     {"min_max_ratio", fairness}};
    if (cfg.ping_interval.count() > 0) {
      j["ping_ms"] = quantiles_ms(r->ping);
      j["pings_sent"] = r->pings_sent;
    }
  } else {
    std::printf("%s: %d pairs x %zu B, %s loop", where.c_str(), cfg.pairs, cfg.size, loop.c_str());
    if (cfg.rate > 0) std::printf(" %.0f pkt/s per pair", cfg.rate);
    if (!cfg.flood && cfg.rate == 0) std::printf(" window %d", cfg.window);
    std::printf(", %s writes (%.1f frames per write), %.2f s measured, %d thread(s)\n",
                write_mode.c_str(), frames_per_write, secs, cfg.threads);
    std::printf("sent       %10.0f pkt/s  %9.1f Mbit/s\n", sent_pps, sent_pps * bits / 1e6);
    std::printf("delivered  %10.0f pkt/s  %9.1f Mbit/s\n", deliv_pps, deliv_pps * bits / 1e6);
    std::printf("drops      %.3f %% (%llu of %llu packets lost; %llu stalls)\n", drop_pct,
                static_cast<unsigned long long>(r->lost),
                static_cast<unsigned long long>(r->total_sent),
                static_cast<unsigned long long>(r->stalls));
    std::printf("latency    %s\n", quantiles_text(r->latency).c_str());
    std::printf("fairness   slowest pair %.0f pkt/s, fastest %.0f pkt/s (min/max %.2f)\n",
                r->min_pair_pps, r->max_pair_pps, fairness);
    if (cpu_share) {
      std::printf("relay cpu  %.2f s in %.2f s (%.0f %% of a core)", *r->server_cpu_seconds, secs,
                  *cpu_share);
      if (cpu_per_packet) std::printf(": %.2f us per delivered packet", *cpu_per_packet * 1e3);
      std::printf("; derp-bench %.2f s\n", r->self_cpu_seconds);
    }
    if (cfg.ping_interval.count() > 0) {
      std::printf("ping rtt   %s (%llu pings, %llu pongs)\n", quantiles_text(r->ping).c_str(),
                  static_cast<unsigned long long>(r->pings_sent),
                  static_cast<unsigned long long>(r->ping.count()));
    }
    if (r->foreign > 0) {
      std::printf("warning: %llu packets from an unexpected source\n",
                  static_cast<unsigned long long>(r->foreign));
    }
  }
  return finish(cli, j, delivered_any ? "" : "no packet was delivered", asserts, report);
}
