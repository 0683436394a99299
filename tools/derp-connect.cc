// derp-connect: connect to a relay and report every phase of the connect (DNS, TCP, TLS, HTTP
// upgrade, DERP handshake), what the relay said (key, protocol version, ServerInfo) and what the
// transport negotiated (addresses, TLS version/cipher/certificate).
//   derp-connect SERVER | --derp-map FILE|URL --region ID  [--count N] [--interval D] [--json]
// Exit 0 when every connect succeeded, else the layered code (3..9) of the first failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <thread>

#include "common/cli.h"
#include "common/client_setup.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"

namespace {

using namespace derp;
using namespace derp::tools;

double ms(std::chrono::nanoseconds d) { return static_cast<double>(d.count()) / 1e6; }

struct Phase {
  const char* name;
  std::chrono::nanoseconds ConnectReport::*field;
};
constexpr Phase kPhases[] = {
    {"dns", &ConnectReport::dns},   {"tcp", &ConnectReport::tcp},
    {"tls", &ConnectReport::tls},   {"http", &ConnectReport::http},
    {"handshake", &ConnectReport::handshake}, {"total", &ConnectReport::total},
};

struct Stats {
  double min = 0, avg = 0, max = 0;
};

// min/avg/max in ms of one phase over every connect.
Stats summarise(const std::vector<ConnectReport>& reports,
                std::chrono::nanoseconds ConnectReport::*field) {
  Stats st;
  if (reports.empty()) return st;
  st.min = ms(reports.front().*field);
  double sum = 0;
  for (const auto& r : reports) {
    double v = ms(r.*field);
    st.min = std::min(st.min, v);
    st.max = std::max(st.max, v);
    sum += v;
  }
  st.avg = sum / static_cast<double>(reports.size());
  return st;
}

// Whole days from now until an RFC 3339 UTC time ("2027-11-25T19:19:08Z"); nullopt if unparsable.
std::optional<int64_t> days_until(const std::string& when) {
  std::tm tm{};
  if (!strptime(when.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm)) return std::nullopt;
  const std::time_t t = timegm(&tm);
  const std::time_t now = std::time(nullptr);
  return static_cast<int64_t>(std::floor(std::difftime(t, now) / 86400.0));
}

// Why a phase is zero, for humans.
std::string phase_note(const ConnectReport& r, const char* name) {
  std::string n = name;
  if (n == "dns" && r.custom_dialer) return "custom dialer";
  if (n == "dns" && r.dns_cached) return "cached";
  if (n == "dns" && r.dns.count() == 0) return "IP literal";
  if (n == "tls" && r.transport == "tcp") return "plain HTTP";
  if (n == "http" && r.fast_start) return "fast start: no 101";
  return "";
}

nlohmann::json phases_json(const ConnectReport& r) {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& p : kPhases) j[p.name] = ms(r.*(p.field));
  return j;
}

nlohmann::json report_json(const ConnectReport& r) {
  nlohmann::json j = json_ok();
  j["url"] = r.url;
  if (!r.node_name.empty()) j["node"] = r.node_name;
  j["transport"] = r.transport;
  j["proxy"] = r.proxy.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.proxy);
  if (!r.note.empty()) j["note"] = r.note;
  j["remote_addr"] = r.remote_addr;
  j["local_addr"] = r.local_addr;
  j["server_key"] = r.server_key.to_string();
  j["protocol_version"] = r.server_info.version;
  j["server_info"] = {
      {"version", r.server_info.version},
      {"token_bucket_bytes_per_second", r.server_info.token_bucket_bytes_per_second},
      {"token_bucket_bytes_burst", r.server_info.token_bucket_bytes_burst}};
  j["fast_start"] = r.fast_start;
  j["dns_cached"] = r.dns_cached;
  j["phases_ms"] = phases_json(r);
  if (r.tls_info) {
    const TlsInfo& t = *r.tls_info;
    nlohmann::json tj = {{"version", t.version},      {"cipher", t.cipher},
                         {"subject", t.subject},      {"issuer", t.issuer},
                         {"not_after", t.not_after},  {"cert_sha256", t.cert_sha256},
                         {"verified", t.verified},    {"meta_cert", t.meta_cert}};
    if (auto d = days_until(t.not_after)) tj["days_to_expiry"] = *d;
    j["tls"] = tj;
  } else {
    j["tls"] = nullptr;
  }
  return j;
}

void print_report(const ConnectReport& r) {
  std::printf("connected to %s%s%s\n", r.url.c_str(),
              r.node_name.empty() ? "" : (" (node " + r.node_name + ")").c_str(), "");
  for (const auto& p : kPhases) {
    std::string note = phase_note(r, p.name);
    std::printf("  %-12s %9.3f ms%s\n", p.name, ms(r.*(p.field)),
                note.empty() ? "" : ("  (" + note + ")").c_str());
  }
  std::printf("  %-12s %s%s\n", "transport", r.transport.c_str(),
              r.proxy.empty() ? "" : (" via proxy " + r.proxy).c_str());
  if (!r.note.empty()) std::printf("  %-12s %s\n", "note", r.note.c_str());
  std::printf("  %-12s %s\n", "remote", r.remote_addr.c_str());
  std::printf("  %-12s %s\n", "local", r.local_addr.c_str());
  std::printf("  %-12s %s\n", "server key", r.server_key.to_string().c_str());
  std::printf("  %-12s %d\n", "protocol", r.server_info.version);
  if (r.server_info.token_bucket_bytes_per_second > 0) {
    std::printf("  %-12s %lld bytes/s, burst %lld bytes\n", "rate limit",
                static_cast<long long>(r.server_info.token_bucket_bytes_per_second),
                static_cast<long long>(r.server_info.token_bucket_bytes_burst));
  } else {
    std::printf("  %-12s none advertised\n", "rate limit");
  }
  if (r.tls_info) {
    const TlsInfo& t = *r.tls_info;
    std::printf("  %-12s %s %s%s\n", "tls", t.version.c_str(), t.cipher.c_str(),
                t.verified ? "" : " (not verified)");
    std::printf("  %-12s %s\n", "subject", t.subject.c_str());
    std::printf("  %-12s %s\n", "issuer", t.issuer.c_str());
    auto days = days_until(t.not_after);
    std::printf("  %-12s %s%s\n", "expires", t.not_after.c_str(),
                days ? (" (" + std::to_string(*days) + " days)").c_str() : "");
    std::printf("  %-12s %s\n", "cert pin", t.cert_sha256.c_str());
    if (r.fast_start) std::printf("  %-12s yes (key from the TLS meta certificate)\n", "fast start");
  }
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace derp;
  using namespace derp::tools;
  ToolCli cli("derp-connect", "Connect to a relay and report each phase of the connect");
  cli.add_server();
  cli.add_server_key();
  cli.add_key_file("Our key (derper's JSON key file); default: a fresh ephemeral key");
  cli.add_json();
  cli.add_timeout("10s", "Give up on one connect after this long");
  int64_t count = 1;
  std::string interval_text = "1s";
  cli.app()
      .add_option("--count,-c", count, "Connect this many times and summarise")
      ->type_name("N")
      ->check(at_least(1))
      ->capture_default_str();
  cli.app()
      .add_option("--interval,-i", interval_text, "Time between connects (with --count)")
      ->type_name("DURATION")
      ->default_str("1s");
  cli.set_manual({
      .description =
          "derp-connect connects to a relay and reports each phase of the connect in "
          "milliseconds: dns, tcp, tls (0 for http://), http (the upgrade, or the WebSocket "
          "handshake), handshake (ServerKey, ClientInfo, ServerInfo) and total. Then the relay's "
          "key, protocol version and ServerInfo, the remote and local address, the transport, "
          "the node used (with --derp-map) and, for TLS, the version, cipher, certificate "
          "subject, issuer, expiry and its sha256-raw: pin.\n\n"
          "--count N connects N times, a fresh client each time and --interval apart, and ends "
          "with a min/avg/max table per phase. --timeout bounds each connect. The exit status "
          "is 0 when every connect succeeded, else that of the first failure.",
      .examples = {{"Connect five times and summarise, as JSON:",
                    "derp-connect http://127.0.0.1:3340 --count 5 --json"},
                   {"Connect to region 1 of a DERP map:",
                    "derp-connect --derp-map map.json --region 1"}},
      .environment = {derp_http_environment()},
  });
  if (auto code = cli.parse(argc, argv)) return *code;
  auto interval = parse_duration(interval_text);
  if (!interval) return cli.fail(interval.error().wrap("--interval"));

  std::vector<ConnectReport> reports;
  for (int64_t i = 1; i <= count; ++i) {
    if (i > 1) std::this_thread::sleep_for(*interval);  // pacing, not waiting for an event
    // A fresh client each time: every connect pays every phase (no DNS cache, no live conn).
    auto tc = make_client(cli, /*connect=*/true);
    if (!tc) return cli.fail(tc.error());
    auto report = tc->client->last_connect_report();
    tc->client->close();
    if (!report) return cli.fail(Error(ErrorKind::kInternal, "connected but no connect report"));
    if (!cli.json() && count > 1) {
      std::printf("connect %lld: total %.3f ms (dns %.3f, tcp %.3f, tls %.3f, http %.3f, "
                  "handshake %.3f)\n",
                  static_cast<long long>(i), ms(report->total), ms(report->dns), ms(report->tcp),
                  ms(report->tls), ms(report->http), ms(report->handshake));
      std::fflush(stdout);
    }
    reports.push_back(std::move(*report));
  }

  const ConnectReport& last = reports.back();
  if (cli.json()) {
    nlohmann::json j = report_json(last);
    j["count"] = count;
    if (count > 1) {
      nlohmann::json attempts = nlohmann::json::array();
      for (const auto& r : reports) attempts.push_back(phases_json(r));
      j["attempts"] = attempts;
    }
    nlohmann::json summary = nlohmann::json::object();
    for (const auto& p : kPhases) {
      auto st = summarise(reports, p.field);
      summary[p.name] = {{"min", st.min}, {"avg", st.avg}, {"max", st.max}};
    }
    j["summary_ms"] = summary;
    print_json_line(j);
    return kExitOk;
  }
  print_report(last);
  if (count > 1) {
    std::printf("--- %lld connects, min/avg/max ms ---\n", static_cast<long long>(count));
    for (const auto& p : kPhases) {
      auto st = summarise(reports, p.field);
      std::printf("  %-12s %9.3f / %9.3f / %9.3f\n", p.name, st.min, st.avg, st.max);
    }
    std::fflush(stdout);
  }
  return kExitOk;
}
