// derp-captive: is there a captive portal or a meddling middlebox between us and DERP?
//   derp-captive SERVER... | --derp-map FILE|URL [--port 80] [--json] [--timeout 3s]
// GET /generate_204 with a random X-Tailscale-Challenge; 204 plus the exact
// X-Tailscale-Response means no portal (PROTOCOL.md §10). Exit 0 no portal, 1 portal or
// middlebox detected, 3..9 when no endpoint could be reached at all.
#include <fmt/format.h>

#include <cstdio>

#include "common/cli.h"
#include "common/exit_codes.h"
#include "common/json_output.h"
#include "derp/derp_map_lint.h"
#include "derp/netcheck.h"

namespace {

using namespace derp;
using namespace derp::probe;
using namespace derp::tools;

// "host", "host:port", "http://host[:port]" or a full URL → the /generate_204 URL.
std::string endpoint_url(const std::string& server) {
  std::string s = server;
  if (s.find("://") == std::string::npos) s = "http://" + s;
  const auto scheme_end = s.find("://") + 3;
  if (s.find('/', scheme_end) == std::string::npos) s += "/generate_204";
  return s;
}

const char* explain(CaptiveVerdict v) {
  switch (v) {
    case CaptiveVerdict::kNoPortal: return "no captive portal";
    case CaptiveVerdict::kRedirect: return "captive portal (redirect)";
    case CaptiveVerdict::kBody: return "captive portal or rewriting proxy (content instead of 204)";
    case CaptiveVerdict::kMissingHeader: return "interfering middlebox (challenge not answered)";
    case CaptiveVerdict::kWrongHeader: return "interfering middlebox (wrong challenge answer)";
    case CaptiveVerdict::kBadStatus: return "captive portal or middlebox (unexpected status)";
    case CaptiveVerdict::kNoResult: return "no result";
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  ToolCli cli("derp-captive", "Detect captive portals and middleboxes via /generate_204");
  std::vector<std::string> servers;
  std::string map_source;
  int port = 80;
  cli.app().add_option("SERVER", servers,
                       "Relay(s) to check: host[:port] or http://host[:port][/generate_204]")
      ->type_name("URL");
  cli.app()
      .add_option("--derp-map", map_source,
                  "Check the map's CanPort80 nodes (http://<IPv4>/generate_204), as "
                  "netcheck does")
      ->type_name("FILE|URL");
  cli.app()
      .add_option("--port", port, "With --derp-map: the port to use instead of 80")
      ->type_name("PORT")
      ->check(in_range(1, 65535))
      ->capture_default_str();
  cli.add_json();
  cli.add_timeout("3s", "Per request");
  cli.set_manual({
      .description =
          "derp-captive checks for captive portals and middleboxes the way Tailscale does: a "
          "GET /generate_204 with a random X-Tailscale-Challenge to every endpoint at once, "
          "following no redirects. A relay answers 204 with the matching X-Tailscale-Response; "
          "anything else is a verdict: redirect (a captive portal), body (a portal page or a "
          "rewriting proxy), missing_header or wrong_header (a middlebox answered), bad_status, "
          "or no_result (a transport error, which says nothing about a portal).\n\n"
          "SERVER is host[:port] or http://host[:port][/path]. With --derp-map the endpoints are "
          "netcheck's: http://<IPv4>/generate_204 of the CanPort80 nodes, at most 5.\n\n"
          "The exit status is 0 when no endpoint saw a portal, 1 when any did, and that of the "
          "first error when no endpoint gave a result.",
      .examples = {{"Check a relay on loopback:", "derp-captive http://127.0.0.1:3340"},
                   {"Check the nodes of a DERP map, as JSON:",
                    "derp-captive --derp-map map.json --json"}},
  });
  if (auto code = cli.parse(argc, argv)) return *code;
  if (servers.empty() == map_source.empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "give SERVER(s) or --derp-map, not both or neither"));
  }
  if (map_source.empty() && cli.app().count("--port") > 0) {
    return cli.fail(Error(ErrorKind::kUsage,
                          "--port applies only with --derp-map; give a SERVER's port in it "
                          "(host:port)"));
  }
  for (const auto& s : servers) {
    const auto scheme_end = s.find("://");
    if (scheme_end == std::string::npos) continue;
    const std::string scheme = s.substr(0, scheme_end);
    if (scheme != "http") {
      return cli.fail(Error(ErrorKind::kUsage,
                            fmt::format("{}: the captive-portal check is plain HTTP (a portal "
                                        "answers on port 80 before any TLS); use http://, not "
                                        "{}://",
                                        s, scheme)));
    }
  }
  std::vector<std::string> urls;
  if (!map_source.empty()) {
    auto map = load_derp_map(map_source, cli.timeout());
    if (!map) return cli.fail(map.error());
    urls = captive_endpoints(*map, 0, static_cast<uint16_t>(port));
    if (urls.empty()) {
      return cli.fail(Error(ErrorKind::kUsage,
                            "the DERP map has no node with IPv4 and CanPort80 to check"));
    }
  } else {
    for (const auto& s : servers) urls.push_back(endpoint_url(s));
  }
  auto results = check_captive(urls, cli.timeout());

  bool captive = false, any_result = false;
  std::optional<Error> first_error;
  for (const auto& r : results) {
    if (r.verdict == CaptiveVerdict::kNoResult) {
      if (!first_error) first_error = r.error;
      continue;
    }
    any_result = true;
    captive |= r.verdict != CaptiveVerdict::kNoPortal;
  }
  nlohmann::json j;
  int code = kExitOk;
  if (!any_result && first_error) {
    j = json_error(*first_error);
    code = cli.fail_line(*first_error);
  } else {
    j = json_ok();
    j["captive_portal"] = captive;
    if (captive) {
      std::string why;
      for (const auto& r : results) {
        if (r.verdict == CaptiveVerdict::kNoResult || r.verdict == CaptiveVerdict::kNoPortal) {
          continue;
        }
        why += fmt::format("{} {}: {}", why.empty() ? "" : ";", r.url, explain(r.verdict));
      }
      why = "captive portal or middlebox detected:" + why;
      code = cli.fail_check(why, "", &j);
    }
  }
  if (cli.json()) {
    j["endpoints"] = nlohmann::json::array();
    for (const auto& r : results) {
      nlohmann::json e{{"url", r.url},
                       {"verdict", captive_verdict_name(r.verdict)},
                       {"status", r.status},
                       {"detail", r.detail}};
      if (r.verdict == CaptiveVerdict::kNoResult) {
        e["error"] = {{"layer", error_kind_name(r.error.kind)}, {"message", r.error.message}};
      }
      j["endpoints"].push_back(e);
    }
    print_json_line(j);
  } else {
    for (const auto& r : results) {
      std::printf("%s: %s: %s\n", r.url.c_str(), explain(r.verdict), r.detail.c_str());
    }
    if (any_result) {
      std::printf("%s\n", captive ? "captive portal or middlebox detected" : "no captive portal");
    }
  }
  return code;
}
