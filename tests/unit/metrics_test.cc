// Rendering of the relay's counters for scrapers (server/metrics.h) and the /debug/ routes'
// access rule (server/http_routes.h): names, types, labels, and every line parseable.
#include "server/metrics.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>

#include "server/http_routes.h"

namespace derp::server {
namespace {

CounterMap sample() {
  return {
      {"accepts", 3},
      {"packets_received", 42},
      {"gauge_current_connections", 2},
      {"counter_total_dup_client_conns", 1},
      {"packets_dropped", 7},
      {"packets_dropped_reason_unknown_dest", 5},
      {"packets_dropped_reason_queue_head", 2},
      {"packets_dropped_type_disco", 1},
      {"packets_received_kind_other", 40},
      {"stun_requests_success", 9},
      {"stun_requests_not_stun", 4},
      {"stun_addrfamily_ipv4", 8},
      {"stun_addrfamily_ipv6", 1},
  };
}

// One line of the text exposition format: a TYPE comment or a sample with optional labels.
const std::regex kTypeLine("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)");
const std::regex kSampleLine(
    "([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{([a-zA-Z_][a-zA-Z0-9_]*)=\"((?:[^\"\\\\\\n]|\\\\.)*)\"\\})? "
    "(-?[0-9]+)");

struct Parsed {
  std::map<std::string, std::string> types;  // family -> type
  std::map<std::string, int64_t> samples;    // "name" or "name{label=value}" -> value
};

Parsed parse_all(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line;
  std::string family;  // the TYPE line in force
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kTypeLine)) {
      EXPECT_EQ(p.types.count(m[1]), 0u) << "TYPE twice: " << line;
      family = m[1];
      p.types[family] = m[2];
    } else if (std::regex_match(line, m, kSampleLine)) {
      EXPECT_EQ(m[1].str(), family) << "sample outside its family's TYPE block: " << line;
      std::string key = m[1];
      if (m[2].matched) key += "{" + m[3].str() + "=" + m[4].str() + "}";
      EXPECT_EQ(p.samples.count(key), 0u) << "duplicate sample: " << line;
      p.samples[key] = std::stoll(m[5]);
    } else {
      ADD_FAILURE() << "unparseable line: " << line;
    }
  }
  EXPECT_TRUE(text.empty() || text.back() == '\n');
  return p;
}

TEST(MetricsPrometheus, EveryLineParsesAndEveryCounterAppearsOnce) {
  const auto p = parse_all(render_prometheus(sample()));
  EXPECT_EQ(p.samples.size(), sample().size());
}

TEST(MetricsPrometheus, GaugeAndCounterPrefixesSetTheTypeAndAreStripped) {
  const auto p = parse_all(render_prometheus(sample()));
  EXPECT_EQ(p.types.at("derp_current_connections"), "gauge");
  EXPECT_EQ(p.samples.at("derp_current_connections"), 2);
  EXPECT_EQ(p.types.at("derp_total_dup_client_conns"), "counter");
  EXPECT_EQ(p.samples.at("derp_total_dup_client_conns"), 1);
  EXPECT_EQ(p.types.at("derp_accepts"), "counter");
  EXPECT_EQ(p.samples.at("derp_packets_received"), 42);
  EXPECT_EQ(p.samples.at("derp_packets_dropped"), 7);
  EXPECT_EQ(p.types.count("derp_gauge_current_connections"), 0u);
}

TEST(MetricsPrometheus, PerLabelKeysBecomeLabelledFamilies) {
  const auto p = parse_all(render_prometheus(sample()));
  EXPECT_EQ(p.types.at("derp_packets_dropped_reason"), "counter");
  EXPECT_EQ(p.samples.at("derp_packets_dropped_reason{reason=unknown_dest}"), 5);
  EXPECT_EQ(p.samples.at("derp_packets_dropped_reason{reason=queue_head}"), 2);
  EXPECT_EQ(p.samples.at("derp_packets_dropped_type{type=disco}"), 1);
  EXPECT_EQ(p.samples.at("derp_packets_received_kind{kind=other}"), 40);
  EXPECT_EQ(p.samples.at("stun_requests{disposition=success}"), 9);
  EXPECT_EQ(p.samples.at("stun_requests{disposition=not_stun}"), 4);
  EXPECT_EQ(p.samples.at("stun_addrfamily{family=ipv4}"), 8);
  EXPECT_EQ(p.samples.at("stun_addrfamily{family=ipv6}"), 1);
}

TEST(MetricsPrometheus, DerpersOwnExpvarsKeepTheirNames) {
  const CounterMap m = {{"derp_websocket_accepts", 4},
                        {"tls_listener_accepted_connections", 6},
                        {"tls_listener_rejected_connections", 2}};
  EXPECT_EQ(render_prometheus(m),
            "# TYPE derp_websocket_accepts counter\n"
            "derp_websocket_accepts 4\n"
            "# TYPE tls_listener_accepted_connections counter\n"
            "tls_listener_accepted_connections 6\n"
            "# TYPE tls_listener_rejected_connections counter\n"
            "tls_listener_rejected_connections 2\n");
  auto j = nlohmann::json::parse(render_expvar_json(m));
  EXPECT_EQ(j["derp_websocket_accepts"], 4);
  EXPECT_EQ(j["tls_listener"]["counter_accepted_connections"], 6);
  EXPECT_EQ(j["tls_listener"]["counter_rejected_connections"], 2);
  EXPECT_TRUE(j["derp"].empty());
}

TEST(MetricsPrometheus, ExactTextForASmallMap) {
  const CounterMap m = {{"gauge_watchers", 1}, {"stun_requests_success", 2}, {"accepts", 3}};
  EXPECT_EQ(render_prometheus(m),
            "# TYPE derp_accepts counter\n"
            "derp_accepts 3\n"
            "# TYPE derp_watchers gauge\n"
            "derp_watchers 1\n"
            "# TYPE stun_requests counter\n"
            "stun_requests{disposition=\"success\"} 2\n");
}

TEST(MetricsPrometheus, OddKeysStillRenderParseableText) {
  const CounterMap m = {{"weird key-1", 1}, {"packets_dropped_reason_a\"b\\c", 2}};
  const auto p = parse_all(render_prometheus(m));
  EXPECT_EQ(p.samples.at("derp_weird_key_1"), 1);
  EXPECT_EQ(p.samples.size(), 2u);
}

TEST(MetricsPrometheus, EmptyMapRendersNothing) { EXPECT_EQ(render_prometheus({}), ""); }

TEST(MetricsExpvar, DerpObjectHoldsTheCountersAndStunIsNested) {
  auto j = nlohmann::json::parse(render_expvar_json(sample()));
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j["derp"]["accepts"], 3);
  EXPECT_EQ(j["derp"]["gauge_current_connections"], 2);
  EXPECT_EQ(j["derp"]["counter_packets_dropped_reason"]["unknown_dest"], 5);
  EXPECT_EQ(j["derp"]["counter_packets_dropped_reason"]["queue_head"], 2);
  EXPECT_EQ(j["derp"]["counter_packets_dropped_type"]["disco"], 1);
  EXPECT_EQ(j["derp"]["counter_packets_received_kind"]["other"], 40);
  EXPECT_FALSE(j["derp"].contains("stun_requests_success"));
  EXPECT_EQ(j["stun"]["counter_requests"]["success"], 9);
  EXPECT_EQ(j["stun"]["counter_requests"]["not_stun"], 4);
  EXPECT_EQ(j["stun"]["counter_addrfamily"]["ipv6"], 1);
  EXPECT_EQ(j["derp"].size(), 8u);  // 5 plain keys and 3 label maps
}

// ---- /debug/ routes

Request get(std::string target) {
  Request req{http::verb::get, target, 11};
  req.set(http::field::host, "x");
  return req;
}

RouteContext ctx(bool allowed) {
  RouteContext c;
  c.debug_allowed = allowed;
  c.counters = [] { return sample(); };
  return c;
}

TEST(MetricsRoutes, DebugVarzServesPrometheusToTrustedPeers) {
  auto res = route_http(get("/debug/varz"), ctx(true));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], kPrometheusContentType);
  EXPECT_EQ(res.body(), render_prometheus(sample()));
}

TEST(MetricsRoutes, DebugVarsServesJsonToTrustedPeers) {
  auto res = route_http(get("/debug/vars"), ctx(true));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "application/json; charset=utf-8");
  EXPECT_EQ(nlohmann::json::parse(res.body())["derp"]["accepts"], 3);
}

TEST(MetricsRoutes, DebugIsForbiddenToOthers) {
  for (const char* path : {"/debug/vars", "/debug/varz", "/debug/", "/debug/pprof/"}) {
    auto res = route_http(get(path), ctx(false));
    EXPECT_EQ(res.result(), http::status::forbidden) << path;
    EXPECT_EQ(res.body(), "debug access denied\n") << path;
  }
}

TEST(MetricsRoutes, UnknownDebugPathIs404AndOtherRoutesAreUnchanged) {
  EXPECT_EQ(route_http(get("/debug/nope"), ctx(true)).result(), http::status::not_found);
  EXPECT_EQ(route_http(get("/debug/"), ctx(true)).result(), http::status::ok);
  EXPECT_EQ(route_http(get("/derp/probe"), ctx(false)).result(), http::status::ok);
  EXPECT_EQ(route_http(get("/debugger"), ctx(true)).result(), http::status::not_found);
}

TEST(MetricsRoutes, FaultEndpointIsOffUnlessAHookIsSet) {
  RouteHooks off;  // ServerOptions::fault_endpoint false: no fault hook
  RouteContext c = ctx(true);
  c.hooks = &off;
  Request post{http::verb::post, "/debug/fault?drop=1", 11};
  post.set(http::field::host, "x");
  auto res = route_http(post, c);
  EXPECT_EQ(res.result(), http::status::not_found);
  EXPECT_EQ(res.body(), "fault injection is off: start the relay with --fault-endpoint\n");
  EXPECT_EQ(route_http(get("/debug/"), c).body().find("/debug/fault"), std::string::npos);

  RouteHooks on;
  std::string applied;
  on.fault = [&](std::string_view spec) -> Result<std::string> {
    applied = std::string(spec);
    return std::string("ok");
  };
  c.hooks = &on;
  EXPECT_EQ(route_http(post, c).result(), http::status::ok);
  EXPECT_EQ(applied, "drop=1");
  EXPECT_NE(route_http(get("/debug/"), c).body().find("/debug/fault"), std::string::npos);
  // Still nobody else's: the access rule comes first.
  c.debug_allowed = false;
  EXPECT_EQ(route_http(post, c).result(), http::status::forbidden);
}

}  // namespace
}  // namespace derp::server
