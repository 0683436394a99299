// derp-probe: netcheck over a DERP map (which regions answer, how fast, which one is home and
// why), a DERP map linter, and a prober for monitoring and CI.
//   derp-probe [--derp-map FILE|URL]... [--json] [--explain] [--previous REPORT.json]
//              [--assert 'preferred==nyc,latency(nyc)<50ms,udp==true']
//   derp-probe lint MAP [--active] [--json]
//   derp-probe --prober (--once [--assert 'failed==0'] | --listen HOST:PORT [--interval 30s]
//              [--bw-interval D]) [--bw-size BYTES] [--derp-map ...]
// Exit codes: docs/CLI.md (1 = lint findings / failed checks / a violated assertion).
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/assert.h"
#include "common/cli.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"
#include "common/term.h"
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

// --bw-size's ceiling: the payload is held in memory.
constexpr int64_t kMaxBwSize = int64_t{1} << 30;

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

// ---- --assert over a netcheck report or a prober round

const std::vector<MetricSpec>& report_metrics() {
  static const std::vector<MetricSpec> kMetrics = {
      {"preferred", MetricKind::kName, false},   // region code or id; "none" when no region won
      {"latency", MetricKind::kDuration, true},  // latency(REGION): STUN, else HTTPS
      {"udp", MetricKind::kBool, false},
      {"ipv4", MetricKind::kBool, false},
      {"ipv6", MetricKind::kBool, false},
      {"captive_portal", MetricKind::kBool, false},
      {"mapping_varies", MetricKind::kBool, false},
      {"regions_reachable", MetricKind::kCount, false},
      {"regions", MetricKind::kCount, false},
  };
  return kMetrics;
}

const std::vector<MetricSpec>& prober_metrics() {
  static const std::vector<MetricSpec> kMetrics = {
      {"failed", MetricKind::kCount, false},
      {"passed", MetricKind::kCount, false},
      {"checks", MetricKind::kCount, false},
      {"bw_mbps", MetricKind::kCount, false},     // the slowest complete bandwidth transfer
      {"bw_time", MetricKind::kDuration, false},  // the longest complete bandwidth transfer
  };
  return kMetrics;
}

// A region written as its RegionCode (case-insensitive) or its RegionID.
std::optional<int> find_region(const DERPMap& map, std::string_view text) {
  for (const auto& [id, r] : map.regions) {
    if (r.region_code.size() == text.size() &&
        std::equal(text.begin(), text.end(), r.region_code.begin(),
                   [](char a, char b) { return std::tolower(a) == std::tolower(b); })) {
      return id;
    }
  }
  int id = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec == std::errc() && p == text.data() + text.size() && map.regions.count(id)) return id;
  return std::nullopt;
}

std::string known_regions(const DERPMap& map) {
  std::string out;
  for (const auto& [id, r] : map.regions) {
    out += (out.empty() ? "" : ", ") + region_label(map, id);
  }
  return out.empty() ? "none" : out;
}

// Region names in the assertions become region ids; an unknown one is a usage error naming it.
Result<void> resolve_regions(const DERPMap& map, std::vector<Assertion>& asserts) {
  auto unknown = [&](const Assertion& a, const std::string& name) {
    return Error(ErrorKind::kUsage, fmt::format("--assert \"{}\": unknown region \"{}\" "
                                                "(regions: {})",
                                                a.text, name, known_regions(map)));
  };
  for (auto& a : asserts) {
    if (a.kind == MetricKind::kName) {
      if (a.want_text == "none" || a.want_text == "0") {
        a.want = 0;
        continue;
      }
      auto id = find_region(map, a.want_text);
      if (!id) return unknown(a, a.want_text);
      a.want = *id;
    }
    if (a.metric == "latency") {
      auto id = find_region(map, a.argument);
      if (!id) return unknown(a, a.argument);
      a.argument = std::to_string(*id);
    }
  }
  return {};
}

AssertReport assert_report(const DERPMap& map, const Report& r,
                           std::span<const Assertion> asserts) {
  auto b = [](bool v) { return std::optional<double>(v ? 1.0 : 0.0); };
  AssertReport rep = evaluate_asserts(
      asserts, [&](std::string_view m, std::string_view arg) -> std::optional<double> {
        if (m == "preferred") return static_cast<double>(r.preferred_derp);
        if (m == "udp") return b(r.udp);
        if (m == "ipv4") return b(r.ipv4);
        if (m == "ipv6") return b(r.ipv6);
        if (m == "captive_portal") {
          return r.captive_portal ? b(*r.captive_portal) : std::nullopt;
        }
        if (m == "mapping_varies") {
          return r.mapping_varies_by_dest_ip ? b(*r.mapping_varies_by_dest_ip) : std::nullopt;
        }
        if (m == "regions") return static_cast<double>(r.regions.size());
        if (m == "regions_reachable") {
          double n = 0;
          for (const auto& [id, rr] : r.regions) n += (rr.latency_ms || rr.https_ms) ? 1 : 0;
          return n;
        }
        if (m == "latency") {
          auto it = r.regions.find(std::stoi(std::string(arg)));
          if (it == r.regions.end()) return std::nullopt;
          return it->second.latency_ms ? it->second.latency_ms : it->second.https_ms;
        }
        return std::nullopt;
      });
  rep.name_of = [&map](std::string_view, double v) {
    const int id = static_cast<int>(v);
    return id == 0 ? std::string("none") : region_label(map, id);
  };
  return rep;
}

// Why no region answered, region by region: the message of netcheck's check failure.
std::string no_region_answered(const DERPMap& map, const Report& r) {
  std::string why;
  for (const auto& [id, rr] : r.regions) {
    why += (why.empty() ? "" : "; ") + region_label(map, id) + ": " +
           (rr.https_error.empty() ? "no answer" : rr.https_error);
  }
  return "no region answered" + (why.empty() ? "" : " (" + why + ")");
}

json check_json(const CheckResult& c) {
  json j{{"name", c.name()},    {"check", c.check},     {"region", c.region_id},
         {"node", c.node},      {"ok", c.ok},           {"latency_ms", c.latency_ms},
         {"detail", c.detail}};
  if (c.cert_expiry_seconds) j["cert_expiry_seconds"] = *c.cert_expiry_seconds;
  if (c.bw_bytes) {
    j["bytes"] = *c.bw_bytes;
    j["seconds"] = c.bw_seconds ? json(*c.bw_seconds) : json(nullptr);
    const auto mbps = c.bw_mbps();
    j["mbps"] = mbps ? json(*mbps) : json(nullptr);
  }
  return j;
}

int prober_once(const ToolCli& cli, const DERPMap& map, ProberOptions po,
                std::span<const Assertion> asserts) {
  auto progress = ProgressLine::for_stderr(cli.name(), cli.json());
  if (progress.enabled()) {
    po.progress = [&](size_t done, size_t total, const CheckResult& last) {
      progress.update(fmt::format("prober {}/{} checks, {} {}", done, total, last.name(),
                                  last.ok ? "ok" : "FAIL"));
    };
  }
  progress.start("prober: running the checks");
  auto results = run_prober_checks(map, po);
  progress.finish();
  std::vector<const CheckResult*> failed;
  for (const auto& c : results) {
    if (!c.ok) failed.push_back(&c);
  }
  AssertReport rep =
      evaluate_asserts(asserts, [&](std::string_view m, std::string_view) -> std::optional<double> {
        if (m == "failed") return static_cast<double>(failed.size());
        if (m == "passed") return static_cast<double>(results.size() - failed.size());
        if (m == "checks") return static_cast<double>(results.size());
        // Over complete transfers; none (no --bw-size, or every transfer failed) = not measured.
        std::optional<double> out;
        for (const auto& c : results) {
          if (m == "bw_mbps" && c.bw_mbps())
            out = std::min(out.value_or(*c.bw_mbps()), *c.bw_mbps());
          if (m == "bw_time" && c.bw_seconds) {
            out = std::max(out.value_or(0.0), *c.bw_seconds * 1000);
          }
        }
        return out;
      });
  // With --assert the assertions decide (e.g. a tolerated failing check); without, any failure.
  const bool ok = asserts.empty() ? failed.empty() : rep.ok();
  std::string failed_checks;
  if (!failed.empty()) {
    failed_checks = fmt::format("{} of {} checks failed:", failed.size(), results.size());
    for (size_t i = 0; i < failed.size(); ++i) {
      failed_checks += fmt::format("{} {}: {}", i == 0 ? "" : ";", failed[i]->name(),
                                   failed[i]->detail);
    }
  }
  const std::string why = rep.ok() ? failed_checks : rep.summary();
  json j = ok ? json_ok() : json_check_failed(why);
  if (cli.json()) {
    j["failed"] = json::array();
    for (const auto* c : failed) j["failed"].push_back(c->name());
    j["checks"] = json::array();
    for (const auto& c : results) j["checks"].push_back(check_json(c));
    if (!asserts.empty()) j["asserts"] = rep.to_json();
    print_json_line(j);
  } else {
    const Palette out = palette_for(STDOUT_FILENO, false, cli.no_color());
    std::printf("%-28s %-6s %-10s %s\n", "CHECK", "STATUS", "LATENCY", "DETAIL");
    for (const auto& c : results) {
      // Padded before painting: the colour's escape bytes take no column.
      const std::string status = fmt::format("{:<6}", c.ok ? "ok" : "FAIL");
      std::printf("%-28s %s %-10s %s\n", c.name().c_str(),
                  (c.ok ? out.good(status) : out.bad(status)).c_str(),
                  c.ok ? fmt::format("{:.1f}ms", c.latency_ms).c_str() : "-", c.detail.c_str());
    }
    std::fflush(stdout);
  }
  // The one stderr line comes after the report (on a terminal, below the table).
  if (!ok) return cli.fail_check(why, "", nullptr);
  if (!failed.empty()) cli.note(failed_checks + " (tolerated by --assert)");
  return kExitOk;
}

int prober_loop(const ToolCli& cli, const DERPMap& map, const ProberOptions& po,
                const std::string& listen, std::chrono::nanoseconds interval,
                std::optional<std::chrono::nanoseconds> bw_interval) {
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
  // Bandwidth transfers run every round, or (--bw-interval) only once that much time passed
  // since the last ones, as derpprobe schedules them apart; meanwhile their last results stay
  // in /metrics.
  std::optional<std::chrono::steady_clock::time_point> last_bw;
  std::vector<CheckResult> bw_results;
  while (true) {
    ProberOptions this_round = po;
    const auto now = std::chrono::steady_clock::now();
    const bool bw_due =
        po.bw_size > 0 && (!last_bw || !bw_interval || now - *last_bw >= *bw_interval);
    if (!bw_due) this_round.bw_size = 0;
    if (bw_due) last_bw = now;
    auto results = run_prober_checks(map, this_round);
    std::string bw_note;
    if (bw_due) {
      bw_results.clear();
      size_t bw_ok = 0;
      for (const auto& c : results) {
        if (!c.bw_bytes) continue;
        bw_results.push_back(c);
        bw_ok += c.ok ? 1 : 0;
      }
      bw_note = fmt::format("; bandwidth: {} of {} transfers passed", bw_ok, bw_results.size());
    } else {
      results.insert(results.end(), bw_results.begin(), bw_results.end());
    }
    size_t bad = 0;
    for (const auto& c : results) bad += c.ok ? 0 : 1;
    std::unique_lock<std::mutex> l(mu);
    last = std::move(results);
    ++runs;
    cli.note(fmt::format("round {}: {} checks, {} failed{}", runs, last.size(), bad, bw_note));
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
  int64_t bw_size = 0;
  std::string bw_interval_text;
  int captive_port = 80;
  std::string ca_file;
  cli.app().add_option("--derp-map", maps,
                       "DERP map file or http(s) URL (repeatable: later maps' regions replace "
                       "earlier ones; default: Tailscale's public map)")
      ->type_name("FILE|URL")
      ->default_str(kDefaultDerpMapUrl);
  cli.app()
      .add_option("--ca-file", ca_file, "Also trust the CA certificates in this PEM file")
      ->type_name("FILE");
  cli.add_json();
  cli.add_timeout("5s", "Budget of the whole report (prober: of each check)");
  cli.app().add_flag("--explain", explain, "Say why the preferred region won");
  cli.app()
      .add_option("--previous", previous_path,
                  "A previous --json report: its home gets hysteresis")
      ->type_name("FILE");
  cli.app().add_flag("--prober", prober, "Prober mode: TLS, STUN, DERP and send/recv checks");
  cli.app().add_flag("--once", once, "Prober: run every check once, print a table, exit 0/1");
  cli.app()
      .add_option("--listen", listen, "Prober: serve /metrics on HOST:PORT")
      ->type_name("HOST:PORT");
  cli.app()
      .add_option("--interval", interval_text, "Prober: time between rounds")
      ->type_name("DURATION")
      ->default_str("30s");
  cli.app()
      .add_option("--cert-warn-days", warn_days,
                  "Prober: fail the tls check when the certificate expires sooner")
      ->type_name("N")
      ->default_str("14");
  cli.app().add_option("--captive-port", captive_port,
                       "Port of the captive-portal check's http://<IPv4>/generate_204 "
                       "(run when no UDP answer came)")
      ->type_name("PORT")
      ->default_str("80")
      ->check(in_range(1, 65535));
  cli.app().add_flag("--no-sendrecv", no_mesh, "Prober: skip the send/recv pair checks");
  cli.app()
      .add_option("--bw-size,--bw-probe-size-bytes", bw_size,
                  "Prober: bandwidth probe of this many bytes per node pair of a region (0 = off)")
      ->type_name("BYTES")
      ->default_str("0")
      ->check(in_range(int64_t{0}, kMaxBwSize));
  cli.app()
      .add_option("--bw-interval", bw_interval_text,
                  "Prober --listen: time between bandwidth probes (default: every round)")
      ->type_name("DURATION");
  std::vector<std::string> assert_texts;
  cli.app()
      .add_option("--assert", assert_texts,
                  "CI gate over the report, e.g. 'preferred==nyc,latency(nyc)<50ms,udp==true' "
                  "(repeatable; all must hold). Metrics: " +
                      describe_metrics(report_metrics()) +
                      ". With --prober --once: " + describe_metrics(prober_metrics()))
      ->type_name("EXPR")
      ->allow_extra_args(false);
  std::string lint_map;
  bool lint_active = false;
  CLI::App* lint = cli.app().add_subcommand("lint", "Check a DERP map; exit 1 on findings");
  lint->add_option("MAP", lint_map, "DERP map file or http(s) URL")
      ->type_name("FILE|URL")
      ->required();
  lint->add_flag("--active", lint_active, "Also try a TCP connect to every DERP port");
  lint->fallthrough();  // --json, --timeout, --ca-file may follow MAP
  show_parent_options(*lint, {"--ca-file", "--json", "--timeout", "--no-color"});
  cli.set_manual({
      .description =
          "derp-probe is three tools over a DERP map: netcheck, a DERP map linter and a prober, "
          "standalone counterparts of \"tailscale netcheck\" (which needs tailscaled) and "
          "Tailscale's cmd/derpprobe.\n\n"
          "Without a subcommand it runs netcheck: STUN to every region (an HTTPS fallback when "
          "UDP is blocked), the preferred region with --explain saying why it won, and the "
          "captive-portal check when no UDP answer came. The exit status is 0 when some region "
          "answered and 1 when none did.\n\n"
          "\"derp-probe lint MAP\" prints one line per finding, \"<where>: <code>: <message>\", "
          "and exits 1 when there is any; --active also tries a TCP connect to every DERP "
          "port.\n\n"
          "--prober runs the checks of every node (tls, stun4/stun6, derp, and sendrecv between "
          "the node pairs of a region; bw with --bw-size): with --once a table and exit status "
          "1 when a check failed, with --listen forever, serving Prometheus text on /metrics.\n\n"
          "--derp-map defaults to Tailscale's public map, https://login.tailscale.com/derpmap/"
          "default; later maps' regions replace earlier ones.",
      .examples = {{"Netcheck over a map, saying why the preferred region won:",
                    "derp-probe --derp-map map.json --explain"},
                   {"Lint a map:", "derp-probe lint map.json"},
                   {"The prober's one-shot check, for CI:",
                    "derp-probe --derp-map map.json --prober --once"},
                   {"Serve the prober's metrics on loopback:",
                    "derp-probe --derp-map map.json --prober --listen 127.0.0.1:9101"}},
  });
  if (auto code = cli.parse(argc, argv)) return *code;

  if (lint->parsed() && !assert_texts.empty()) {
    return cli.fail(Error(ErrorKind::kUsage,
                          "--assert does not apply to lint (it exits 1 on "
                          "findings)"));
  }
  if (bw_size > 0 && !prober) {
    return cli.fail(Error(ErrorKind::kUsage, "--bw-size needs --prober"));
  }
  if (!bw_interval_text.empty() && (!prober || once || bw_size == 0)) {
    return cli.fail(Error(ErrorKind::kUsage,
                          "--bw-interval needs --prober --listen and --bw-size (with --once "
                          "every check runs once)"));
  }
  if (prober && !once && !assert_texts.empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "--assert needs --once in prober mode"));
  }
  // Parsed before any work: a bad expression is exit 2 without probing anything.
  std::vector<Assertion> asserts;
  if (!assert_texts.empty()) {
    auto a = parse_asserts(std::span<const std::string>(assert_texts),
                           prober ? prober_metrics() : report_metrics());
    if (!a) return cli.fail(a.error());
    asserts = std::move(*a);
  }

  if (lint->parsed()) {
    auto map = load_derp_map(lint_map, cli.timeout(), ca_file, DerpMapChecks::kStructure);
    if (!map) return cli.fail(map.error());
    auto findings = lint_derp_map(*map);
    if (lint_active) {
      auto more = lint_derp_map_ports(*map, cli.timeout());
      findings.insert(findings.end(), more.begin(), more.end());
    }
    json j = json_ok();
    std::string why;
    if (!findings.empty()) {
      why = fmt::format("{}: {} finding{}:", lint_map, findings.size(),
                                    findings.size() == 1 ? "" : "s");
      for (size_t i = 0; i < findings.size(); ++i) {
        why += (i == 0 ? " " : "; ") + findings[i].line();
      }
      j = json_check_failed(why);
    }
    if (cli.json()) {
      j["findings"] = json::array();
      for (const auto& f : findings) {
        j["findings"].push_back({{"where", f.where}, {"code", f.code}, {"message", f.message}});
      }
      print_json_line(j);
    } else {
      const Palette out = palette_for(STDOUT_FILENO, false, cli.no_color());
      for (const auto& f : findings) std::printf("%s\n", out.bad(f.line()).c_str());
      if (findings.empty()) {
        std::printf("%s: %s\n", lint_map.c_str(), out.good("no findings").c_str());
      }
    }
    return why.empty() ? kExitOk : cli.fail_check(why, "", nullptr);
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
  if (!prober) {
    if (auto ok = resolve_regions(*map, asserts); !ok) return cli.fail(ok.error());
  }

  if (prober) {
    auto interval = parse_positive_duration("--interval", interval_text);
    if (!interval) return cli.fail(interval.error());
    ProberOptions po;
    po.timeout = cli.timeout();
    po.cert_warn_days = warn_days;
    po.ca_file = ca_file;
    po.mesh = !no_mesh;
    po.bw_size = bw_size;
    if (once) return prober_once(cli, *map, po, asserts);
    std::optional<std::chrono::nanoseconds> bw_interval;
    if (!bw_interval_text.empty()) {
      auto d = parse_positive_duration("--bw-interval", bw_interval_text);
      if (!d) return cli.fail(d.error());
      bw_interval = *d;
    }
    return prober_loop(cli, *map, po, listen, *interval, bw_interval);
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
  auto progress = ProgressLine::for_stderr(cli.name(), cli.json());
  std::set<int> heard;  // regions that answered or gave up, for "n/N"
  if (progress.enabled()) {
    o.progress = [&](const ProgressEvent& e) {
      heard.insert(e.region_id);
      progress.update(fmt::format("netcheck {}/{} regions | region {}: {}", heard.size(),
                                  map->regions.size(), region_label(*map, e.region_id), e.what));
    };
  }
  progress.start(fmt::format("netcheck 0/{} regions", map->regions.size()), o.timeout);
  auto report = run_netcheck(*map, o);
  progress.finish();
  if (!report) return cli.fail(report.error());
  const AssertReport rep = assert_report(*map, *report, asserts);
  // With --assert the assertions decide; without, no region answering at all is the failure
  // this tool exists to catch.
  const bool ok = asserts.empty() ? report->preferred_derp != 0 : rep.ok();
  const std::string why = ok ? "" : rep.ok() ? no_region_answered(*map, *report) : rep.summary();
  json j = ok ? json_ok() : json_check_failed(why);
  if (cli.json()) {
    j["report"] = report_json(*map, *report);
    if (!asserts.empty()) j["asserts"] = rep.to_json();
    print_json_line(j);
  } else {
    print_report(*map, *report, explain);
  }
  return ok ? kExitOk : cli.fail_check(why, "", nullptr);
}
