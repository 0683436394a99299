// derp-probe: netcheck over a DERP map (which regions answer, how fast, which one is home and
// why), a DERP map linter, and a prober for monitoring and CI.
//   derp-probe [--derp-map FILE|URL]... [--json] [--explain] [--previous REPORT.json]
//   derp-probe lint MAP [--active] [--json]
//   derp-probe --prober (--once | --listen HOST:PORT [--interval 30s]) [--derp-map ...]
// Exit codes: docs/CLI.md (1 = lint findings / failed checks).
#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/cli.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"
#include "derp/derp_map_lint.h"
#include "derp/netcheck.h"
#include "derp/prober.h"

namespace {

using namespace derp;
using namespace derp::probe;
using namespace derp::tools;
using nlohmann::json;

std::string ms_text(const std::optional<double>& v) {
  return v ? fmt::format("{:.1f}ms", *v) : std::string("-");
}

json opt_json(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }
json opt_json(const std::optional<bool>& v) { return v ? json(*v) : json(nullptr); }

// Several maps (e.g. a list of URLs) become one: regions of later maps replace earlier ones.
Result<DERPMap> load_maps(const std::vector<std::string>& sources, std::chrono::milliseconds t,
                          const std::string& ca_file) {
  DERPMap out;
  for (const auto& s : sources) {
    auto m = load_derp_map(s, t, ca_file);
    if (!m) return std::move(m).error();
    for (auto& [id, r] : m->regions) out.regions[id] = std::move(r);
    if (m->home_params) out.home_params = m->home_params;
  }
  return out;
}

std::string region_label(const DERPMap& map, int id) {
  auto it = map.regions.find(id);
  if (it == map.regions.end() || it->second.region_code.empty()) return std::to_string(id);
  return fmt::format("{} ({})", id, it->second.region_code);
}

json report_json(const DERPMap& map, const Report& r) {
  json regions = json::array();
  for (const auto& [id, rr] : r.regions) {
    json j{{"id", id},
           {"code", map.regions.count(id) ? map.regions.at(id).region_code : ""},
           {"latency_ms", opt_json(rr.latency_ms)},
           {"v4_ms", opt_json(rr.v4_ms)},
           {"v6_ms", opt_json(rr.v6_ms)},
           {"https_ms", opt_json(rr.https_ms)},
           {"node", rr.node}};
    if (!rr.https_error.empty()) j["https_error"] = rr.https_error;
    regions.push_back(j);
  }
  json scaled = json::object();
  for (const auto& [id, ms] : r.home.scaled_ms) scaled[std::to_string(id)] = ms;
  return {
      {"now_unix_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                          r.now.time_since_epoch())
                          .count()},
      {"udp", r.udp},
      {"ipv4", r.ipv4},
      {"ipv6", r.ipv6},
      {"ipv4_can_send", r.ipv4_can_send},
      {"ipv6_can_send", r.ipv6_can_send},
      {"os_has_ipv6", r.os_has_ipv6},
      {"mapping_varies_by_dest_ip", opt_json(r.mapping_varies_by_dest_ip)},
      {"preferred_derp", r.preferred_derp},
      {"global_v4", r.global_v4},
      {"global_v6", r.global_v6},
      {"global_v4_counters", r.global_v4_counters},
      {"global_v6_counters", r.global_v6_counters},
      {"captive_portal", opt_json(r.captive_portal)},
      {"regions", regions},
      {"home",
       {{"preferred", r.home.preferred},
        {"candidate", r.home.candidate},
        {"candidate_ms", r.home.candidate_ms},
        {"old_home", r.home.old_home},
        {"old_home_ms", r.home.old_home_ms < 0 ? json(nullptr) : json(r.home.old_home_ms)},
        {"kept_old_home", r.home.kept_old_home},
        {"scaled_ms", scaled},
        {"reason", r.home.reason}}},
  };
}

// A previous --json report: its time, home and latencies (hysteresis, incremental plans).
Result<Report> read_previous(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error(ErrorKind::kUsage, fmt::format("--previous: cannot read {}", path));
  try {
    json j = json::parse(in);
    const json& r = j.contains("report") ? j.at("report") : j;
    Report rep;
    rep.now = std::chrono::system_clock::time_point(
        std::chrono::milliseconds(r.at("now_unix_ms").get<int64_t>()));
    rep.preferred_derp = r.at("preferred_derp").get<int>();
    for (const auto& reg : r.at("regions")) {
      RegionReport rr;
      if (!reg.at("latency_ms").is_null()) rr.latency_ms = reg.at("latency_ms").get<double>();
      rep.regions[reg.at("id").get<int>()] = rr;
    }
    return rep;
  } catch (const std::exception& e) {
    return Error(ErrorKind::kUsage,
                 fmt::format("--previous {}: not a derp-probe --json report ({})", path, e.what()));
  }
}

void print_report(const DERPMap& map, const Report& r, bool explain) {
  auto yesno = [](bool b) { return b ? "yes" : "no"; };
  auto tri = [](const std::optional<bool>& b) {
    return b ? (*b ? "yes" : "no") : "unknown";
  };
  std::printf("Report:\n");
  std::printf("  UDP:                    %s\n", yesno(r.udp));
  std::printf("  IPv4:                   %s%s\n", yesno(r.ipv4),
              r.global_v4.empty() ? "" : (", " + r.global_v4).c_str());
  std::printf("  IPv6:                   %s%s%s\n", yesno(r.ipv6),
              r.global_v6.empty() ? "" : (", " + r.global_v6).c_str(),
              r.os_has_ipv6 ? "" : " (no IPv6 on this host)");
  std::printf("  MappingVariesByDestIP:  %s\n", tri(r.mapping_varies_by_dest_ip));
  std::printf("  CaptivePortal:          %s\n", tri(r.captive_portal));
  std::printf("  Preferred DERP:         %s\n",
              r.preferred_derp ? region_label(map, r.preferred_derp).c_str() : "none");
  std::printf("\n%-8s %-12s %-10s %-10s %-10s %-10s %-10s %s\n", "REGION", "CODE", "LATENCY",
              "STUN-V4", "STUN-V6", "HTTPS", "NODE", "NOTE");
  for (const auto& [id, rr] : r.regions) {
    std::string code = map.regions.count(id) ? map.regions.at(id).region_code : "";
    std::string note;
    if (id == r.preferred_derp) note = "preferred";
    if (!rr.latency_ms && !rr.https_ms) note = rr.https_error.empty() ? "no answer" : rr.https_error;
    std::printf("%-8d %-12s %-10s %-10s %-10s %-10s %-10s %s\n", id, code.c_str(),
                ms_text(rr.latency_ms).c_str(), ms_text(rr.v4_ms).c_str(),
                ms_text(rr.v6_ms).c_str(), ms_text(rr.https_ms).c_str(),
                rr.node.empty() ? "-" : rr.node.c_str(), note.c_str());
  }
  if (!explain) return;
  const HomeChoice& h = r.home;
  std::printf("\nWhy %s:\n  %s.\n",
              h.preferred ? fmt::format("region {} is preferred", region_label(map, h.preferred)).c_str()
                          : "no region is preferred",
              h.reason.c_str());
  if (!h.scaled_ms.empty()) {
    std::printf("  Candidates (best latency over recent reports x RegionScore):\n");
    std::vector<std::pair<double, int>> order;
    for (const auto& [id, ms] : h.scaled_ms) order.push_back({ms, id});
    std::sort(order.begin(), order.end());
    for (const auto& [ms, id] : order) {
      std::printf("    %-16s %8.1f ms%s\n", region_label(map, id).c_str(), ms,
                  id == h.preferred ? "  <- preferred" : "");
    }
  }
  if (h.old_home != 0) {
    std::printf("  Previous home: %s (%s). Hysteresis keeps it unless a candidate is at least "
                "10 ms and a third faster.\n",
                region_label(map, h.old_home).c_str(),
                h.old_home_ms < 0 ? "no answer this time"
                                  : fmt::format("{:.1f} ms now", h.old_home_ms).c_str());
  } else {
    std::printf("  No previous home (pass --previous REPORT.json to apply hysteresis).\n");
  }
}

json check_json(const CheckResult& c) {
  json j{{"name", c.name()},    {"check", c.check},     {"region", c.region_id},
         {"node", c.node},      {"ok", c.ok},           {"latency_ms", c.latency_ms},
         {"detail", c.detail}};
  if (c.cert_expiry_seconds) j["cert_expiry_seconds"] = *c.cert_expiry_seconds;
  return j;
}

int prober_once(const ToolCli& cli, const DERPMap& map, const ProberOptions& po) {
  auto results = run_prober_checks(map, po);
  std::vector<const CheckResult*> failed;
  for (const auto& c : results) {
    if (!c.ok) failed.push_back(&c);
  }
  if (cli.json()) {
    json j = json_ok();
    j["ok"] = failed.empty();
    j["failed"] = json::array();
    for (const auto* c : failed) j["failed"].push_back(c->name());
    j["checks"] = json::array();
    for (const auto& c : results) j["checks"].push_back(check_json(c));
    print_json_line(j);
  } else {
    std::printf("%-28s %-6s %-10s %s\n", "CHECK", "STATUS", "LATENCY", "DETAIL");
    for (const auto& c : results) {
      std::printf("%-28s %-6s %-10s %s\n", c.name().c_str(), c.ok ? "ok" : "FAIL",
                  c.ok ? fmt::format("{:.1f}ms", c.latency_ms).c_str() : "-", c.detail.c_str());
    }
    std::fflush(stdout);
  }
  for (const auto* c : failed) cli.note(fmt::format("FAIL {}: {}", c->name(), c->detail));
  return failed.empty() ? kExitOk : kExitCheckFailed;
}

int prober_loop(const ToolCli& cli, const DERPMap& map, const ProberOptions& po,
                const std::string& listen, std::chrono::nanoseconds interval) {
  // SIGINT/SIGTERM end the loop: a thread waits for them while the rest run blocked.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::vector<CheckResult> last;
  uint64_t runs = 0;
  auto server = MetricsHttpServer::start(listen, [&] {
    std::lock_guard<std::mutex> l(mu);
    return prober_metrics_text(last, runs);
  });
  if (!server) return cli.fail(server.error());
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    std::lock_guard<std::mutex> l(mu);
    stop = true;
    cv.notify_all();
  });
  std::printf("prober listening on http://%s/metrics\n", (*server)->local_address().c_str());
  std::fflush(stdout);
  while (true) {
    auto results = run_prober_checks(map, po);
    size_t bad = 0;
    for (const auto& c : results) bad += c.ok ? 0 : 1;
    std::unique_lock<std::mutex> l(mu);
    last = std::move(results);
    ++runs;
    cli.note(fmt::format("round {}: {} checks, {} failed", runs, last.size(), bad));
    // Pacing between rounds; a signal ends the wait at once.
    if (cv.wait_for(l, interval, [&] { return stop; })) break;
  }
  (*server)->stop();
  waiter.join();
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  ToolCli cli("derp-probe", "Netcheck, DERP map lint and prober over a DERP map");
  std::vector<std::string> maps;
  bool explain = false;
  std::string previous_path;
  bool prober = false, once = false;
  std::string listen;
  std::string interval_text = "30s";
  int warn_days = 14;
  bool no_mesh = false;
  int captive_port = 80;
  std::string ca_file;
  cli.app().add_option("--derp-map", maps,
                       "DERP map file or http(s) URL (repeatable; default: Tailscale's public "
                       "map)");
  cli.app().add_option("--ca-file", ca_file, "Also trust the CA certificates in this PEM file");
  cli.add_json();
  cli.add_timeout("5s", "Budget of the whole report (prober: of each check)");
  cli.app().add_flag("--explain", explain, "Say why the preferred region won");
  cli.app().add_option("--previous", previous_path,
                       "A previous --json report: its home gets hysteresis");
  cli.app().add_flag("--prober", prober, "Prober mode: TLS, STUN, DERP and send/recv checks");
  cli.app().add_flag("--once", once, "Prober: run every check once, print a table, exit 0/1");
  cli.app().add_option("--listen", listen, "Prober: serve /metrics on HOST:PORT");
  cli.app().add_option("--interval", interval_text, "Prober: time between rounds")
      ->default_str("30s");
  cli.app().add_option("--cert-warn-days", warn_days,
                       "Prober: fail the tls check when the certificate expires sooner")
      ->default_str("14");
  cli.app().add_option("--captive-port", captive_port,
                       "Port of the captive-portal check's http://<IPv4>/generate_204 "
                       "(run when no UDP answer came)")
      ->default_str("80")
      ->check(CLI::Range(1, 65535));
  cli.app().add_flag("--no-sendrecv", no_mesh, "Prober: skip the send/recv pair checks");
  std::string lint_map;
  bool lint_active = false;
  CLI::App* lint = cli.app().add_subcommand("lint", "Check a DERP map; exit 1 on findings");
  lint->add_option("MAP", lint_map, "DERP map file or http(s) URL")->required();
  lint->add_flag("--active", lint_active, "Also try a TCP connect to every DERP port");
  lint->fallthrough();  // --json, --timeout, --ca-file may follow MAP
  if (auto code = cli.parse(argc, argv)) return *code;

  if (lint->parsed()) {
    auto map = load_derp_map(lint_map, cli.timeout(), ca_file);
    if (!map) return cli.fail(map.error());
    auto findings = lint_derp_map(*map);
    if (lint_active) {
      auto more = lint_derp_map_ports(*map, cli.timeout());
      findings.insert(findings.end(), more.begin(), more.end());
    }
    if (cli.json()) {
      json j = json_ok();
      j["ok"] = findings.empty();
      j["findings"] = json::array();
      for (const auto& f : findings) {
        j["findings"].push_back({{"where", f.where}, {"code", f.code}, {"message", f.message}});
      }
      print_json_line(j);
    } else {
      for (const auto& f : findings) std::printf("%s\n", f.line().c_str());
      if (findings.empty()) std::printf("%s: no findings\n", lint_map.c_str());
    }
    return findings.empty() ? kExitOk : kExitCheckFailed;
  }

  if ((once || !listen.empty()) && !prober) {
    return cli.fail(Error(ErrorKind::kUsage, "--once and --listen need --prober"));
  }
  if (prober && !once && listen.empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "--prober needs --once or --listen HOST:PORT"));
  }
  if (maps.empty()) maps.push_back(kDefaultDerpMapUrl);
  auto map = load_maps(maps, cli.timeout(), ca_file);
  if (!map) return cli.fail(map.error());

  if (prober) {
    auto interval = parse_duration(interval_text);
    if (!interval) return cli.fail(interval.error().wrap("--interval"));
    if (interval->count() == 0) {
      return cli.fail(Error(ErrorKind::kUsage, "--interval must be more than 0"));
    }
    ProberOptions po;
    po.timeout = cli.timeout();
    po.cert_warn_days = warn_days;
    po.ca_file = ca_file;
    po.mesh = !no_mesh;
    if (once) return prober_once(cli, *map, po);
    return prober_loop(cli, *map, po, listen, *interval);
  }

  NetcheckOptions o;
  o.timeout = cli.timeout();
  o.stun_timeout = std::min(o.timeout, std::chrono::milliseconds(3000));
  o.ca_file = ca_file;
  o.captive_port = static_cast<uint16_t>(captive_port);
  std::optional<Report> previous;
  if (!previous_path.empty()) {
    auto p = read_previous(previous_path);
    if (!p) return cli.fail(p.error());
    previous = std::move(*p);
    o.previous = &*previous;
  }
  const bool live = !cli.json() && ::isatty(STDERR_FILENO);
  if (live) {
    o.progress = [&](const ProgressEvent& e) {
      cli.note(fmt::format("region {}: {}", region_label(*map, e.region_id), e.what));
    };
  }
  auto report = run_netcheck(*map, o);
  if (!report) return cli.fail(report.error());
  if (cli.json()) {
    json j = json_ok();
    j["report"] = report_json(*map, *report);
    print_json_line(j);
  } else {
    print_report(*map, *report, explain);
  }
  // No region answered at all: the check this tool exists for failed.
  return report->preferred_derp != 0 ? kExitOk : kExitCheckFailed;
}
