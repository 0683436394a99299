// derp-bench: load, latency, memory and connection-rate benchmarks against any DERP relay.
//   derp-bench SERVER [--pairs N] [--size B] [--duration 5s] (--window W | --rate R|max)
//   derp-bench SERVER --idle N [--server-pid PID]
//   derp-bench SERVER --connect-storm N [--concurrency C]
//   derp-bench --raw [--pairs N] [--size B] ...      (the machine's ceiling, no relay)
// The load engine is tools/bench/: pairs of in-process clients (sender → relay → receiver) on
// Asio event loops, speaking DERP with libderp's codec. docs/CLI.md and docs/BENCHMARKS.md.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "bench/load.h"
#include "common/cli.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"

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
  bool raw = false, assert_flag = false;
  auto& app = cli.app();
  app.add_option("--pairs", pairs, "Sender → receiver client pairs")
      ->check(CLI::Range(int64_t{1}, int64_t{5000}));
  app.add_option("--size", size, "Packet payload bytes (16..65536)")
      ->check(CLI::Range(int64_t{16}, int64_t{65536}));
  app.add_option("--duration", duration_text, "Measured time (load) or hold time (--idle)")
      ->default_str("5s");
  app.add_option("--warmup", warmup_text, "Load before measuring starts")->default_str("500ms");
  auto* window_opt = app.add_option("--window", window,
                                    "Closed loop: packets in flight per pair (default mode, 32)")
                         ->check(CLI::Range(int64_t{1}, int64_t{100000}));
  auto* rate_opt = app.add_option("--rate", rate_text,
                                  "Open loop: packets/s per pair, or 'max' (as fast as the "
                                  "sockets take)");
  window_opt->excludes(rate_opt);
  app.add_option("--threads", threads, "Generator event loops (pairs spread over them)")
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
  app.add_option("--ping-interval", ping_text,
                 "Also ping the relay from one more client at this interval during the run");
  auto* idle_opt = app.add_option("--idle", idle, "Open and hold N idle connections")
                       ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  app.add_option("--server-pid", server_pid,
                 "--idle: the relay's pid, to report its RSS per connection (/proc/PID/status)")
      ->check(CLI::PositiveNumber);
  auto* storm_opt = app.add_option("--connect-storm", storm,
                                   "Connect, handshake and close N connections; report conn/s")
                        ->check(CLI::Range(int64_t{1}, int64_t{1000000}));
  app.add_option("--concurrency", concurrency, "--connect-storm: handshakes in flight")
      ->check(CLI::Range(int64_t{1}, int64_t{10000}));
  auto* raw_opt = app.add_flag("--raw", raw,
                               "The same traffic through an in-process plain TCP forwarder "
                               "(the machine's ceiling; no SERVER)");
  idle_opt->excludes(storm_opt)->excludes(raw_opt);
  storm_opt->excludes(raw_opt);
  app.add_flag("--assert", assert_flag,
               "Check the results against expectations (not supported yet)");
  if (auto code = cli.parse(argc, argv)) return *code;

  // The shared client flags that derp-bench's own load engine does not implement yet.
  if (cli.websocket()) {
    return cli.fail(Error(ErrorKind::kUsage,
                          "--websocket is not supported yet by derp-bench's load engine"));
  }
  if (!cli.proxy().empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "--proxy is not supported by derp-bench"));
  }
  if (!cli.derp_map().empty()) {
    return cli.fail(Error(ErrorKind::kUsage,
                          "--derp-map is not supported by derp-bench: give the node's URL"));
  }
  if (assert_flag) {
    return cli.fail(Error(ErrorKind::kUsage, "--assert is not supported yet by derp-bench"));
  }
  if (raw && !cli.server().empty()) {
    return cli.fail(
        Error(ErrorKind::kUsage, "--raw measures an in-process forwarder: drop SERVER"));
  }
  if (!raw && cli.server().empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "SERVER is required (or --raw) (see --help)"));
  }
  if (server_pid != 0 && idle == 0) {
    return cli.fail(Error(ErrorKind::kUsage, "--server-pid needs --idle"));
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
    auto p = parse_duration(ping_text);
    if (!p) return cli.fail(p.error().wrap("--ping-interval"));
    if (p->count() == 0) return cli.fail(Error(ErrorKind::kUsage, "--ping-interval must be > 0"));
    if (raw) return cli.fail(Error(ErrorKind::kUsage, "--ping-interval needs a relay, not --raw"));
    cfg.ping_interval = *p;
  }

  std::optional<Target> target;
  if (!raw) {
    auto t =
        make_target(cli.server(), cli.ca_file(), cli.insecure(), cli.cert_name(), cli.server_key());
    if (!t) return cli.fail(t.error());
    target = std::move(*t);
  }

  // ---- --idle
  if (idle > 0) {
    auto r =
        run_idle(*target, static_cast<int>(idle), cfg.threads, cfg.duration,
                 server_pid ? std::optional<pid_t>(static_cast<pid_t>(server_pid)) : std::nullopt);
    if (!r) return cli.fail(r.error());
    const double n = static_cast<double>(r->connections);
    std::optional<double> per_conn;
    if (r->server_rss_before_kb && r->server_rss_after_kb) {
      per_conn = static_cast<double>(*r->server_rss_after_kb - *r->server_rss_before_kb) * 1024 / n;
    }
    const double self_per_conn =
        static_cast<double>(r->self_rss_after_kb - r->self_rss_before_kb) * 1024 / n;
    if (cli.json()) {
      auto j = json_ok();
      j["mode"] = "idle";
      j["server"] = target->url;
      j["connections"] = r->connections;
      j["open_seconds"] = r->open_seconds;
      j["server_rss_before_kb"] = r->server_rss_before_kb ? nlohmann::json(*r->server_rss_before_kb)
                                                          : nlohmann::json(nullptr);
      j["server_rss_after_kb"] = r->server_rss_after_kb ? nlohmann::json(*r->server_rss_after_kb)
                                                        : nlohmann::json(nullptr);
      j["server_bytes_per_conn"] = per_conn ? nlohmann::json(*per_conn) : nlohmann::json(nullptr);
      j["client_bytes_per_conn"] = self_per_conn;
      print_json_line(j);
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
    return kExitOk;
  }

  // ---- --connect-storm
  if (storm > 0) {
    auto r = run_connect_storm(*target, static_cast<int>(storm), static_cast<int>(concurrency),
                               cfg.threads);
    if (!r) return cli.fail(r.error());
    const int ok = r->connections - r->failed;
    const double rate = static_cast<double>(ok) / r->seconds;
    if (cli.json()) {
      auto j = r->failed == 0 ? json_ok() : json_error(Error(ErrorKind::kConnect, r->first_error));
      j["mode"] = "connect_storm";
      j["server"] = target->url;
      j["connections"] = r->connections;
      j["failed"] = r->failed;
      j["seconds"] = r->seconds;
      j["conns_per_second"] = rate;
      j["handshake_ms"] = quantiles_ms(r->handshake);
      print_json_line(j);
    } else {
      std::printf("connect storm: %d connections (%d failed) to %s in %.2f s: %.0f conn/s\n",
                  r->connections, r->failed, target->url.c_str(), r->seconds, rate);
      std::printf("handshake  %s\n", quantiles_text(r->handshake).c_str());
      if (r->failed > 0) std::printf("first failure: %s\n", r->first_error.c_str());
    }
    return r->failed == 0 ? kExitOk : kExitCheckFailed;
  }

  // ---- load (relay or --raw)
  auto r = run_load(target ? &*target : nullptr, cfg);
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
  const bool ok = r->delivered > 0;
  if (cli.json()) {
    auto j = ok ? json_ok() : json_error(Error(ErrorKind::kIo, "no packet was delivered"));
    j["mode"] = raw ? "raw" : "load";
    j["server"] = raw ? nlohmann::json(nullptr) : nlohmann::json(target->url);
    j["server_key"] = raw ? nlohmann::json(nullptr) : nlohmann::json(r->server_key);
    j["tls"] = !raw && target->tls;
    j["pairs"] = cfg.pairs;
    j["size"] = cfg.size;
    j["threads"] = cfg.threads;
    j["loop"] = cfg.flood || cfg.rate > 0 ? "open" : "closed";
    j["window"] = cfg.flood || cfg.rate > 0 ? nlohmann::json(nullptr) : nlohmann::json(cfg.window);
    j["rate"] = cfg.flood      ? nlohmann::json("max")
                : cfg.rate > 0 ? nlohmann::json(cfg.rate)
                               : nlohmann::json(nullptr);
    j["seconds"] = secs;
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
    print_json_line(j);
  } else {
    std::printf("%s: %d pairs x %zu B, %s loop", where.c_str(), cfg.pairs, cfg.size, loop.c_str());
    if (cfg.rate > 0) std::printf(" %.0f pkt/s per pair", cfg.rate);
    if (!cfg.flood && cfg.rate == 0) std::printf(" window %d", cfg.window);
    std::printf(", %.2f s measured, %d thread(s)\n", secs, cfg.threads);
    std::printf("sent       %10.0f pkt/s  %9.1f Mbit/s\n", sent_pps, sent_pps * bits / 1e6);
    std::printf("delivered  %10.0f pkt/s  %9.1f Mbit/s\n", deliv_pps, deliv_pps * bits / 1e6);
    std::printf("drops      %.3f %% (%llu of %llu packets lost; %llu stalls)\n", drop_pct,
                static_cast<unsigned long long>(r->lost),
                static_cast<unsigned long long>(r->total_sent),
                static_cast<unsigned long long>(r->stalls));
    std::printf("latency    %s\n", quantiles_text(r->latency).c_str());
    std::printf("fairness   slowest pair %.0f pkt/s, fastest %.0f pkt/s (min/max %.2f)\n",
                r->min_pair_pps, r->max_pair_pps, fairness);
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
  if (!ok) {
    cli.note("no packet was delivered");
    return kExitCheckFailed;
  }
  return kExitOk;
}
