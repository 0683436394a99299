// The live status behind "/" and /status.json (server/status.h, server/http_routes.h): the
// rate ring fed with given times, the JSON's fields and who sees mesh names, and derper's
// --home modes. No sockets.
#include "server/status.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/http_routes.h"

namespace derp::server {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

// ---- RateHistory

TEST(RateHistory, FirstSampleOnlyPrimesThenEachSampleAddsTheRateSinceThePrevious) {
  RateHistory h(5);
  const auto t0 = Clock::time_point{} + 100s;
  h.sample(t0, 1000, 50000);
  EXPECT_EQ(h.size(), 0u);
  h.sample(t0 + 1s, 1010, 51000);
  h.sample(t0 + 3s, 1030, 51000);  // two seconds later: 20 packets are 10/s
  auto p = h.points();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_DOUBLE_EQ(p[0].packets_per_second, 10);
  EXPECT_DOUBLE_EQ(p[0].bytes_per_second, 1000);
  EXPECT_DOUBLE_EQ(p[1].packets_per_second, 10);
  EXPECT_DOUBLE_EQ(p[1].bytes_per_second, 0);
}

TEST(RateHistory, IgnoresSamplesNotLaterThanThePreviousAndCountsDecreasesAsZero) {
  RateHistory h(5);
  const auto t0 = Clock::time_point{} + 1s;
  h.sample(t0, 10, 10);
  h.sample(t0, 20, 20);  // same instant: no division by zero, no point
  EXPECT_EQ(h.size(), 0u);
  h.sample(t0 - 1s, 20, 20);  // earlier: ignored too
  EXPECT_EQ(h.size(), 0u);
  h.sample(t0 + 500ms, 5, 15);  // a counter going down is no negative rate
  auto p = h.points();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_DOUBLE_EQ(p[0].packets_per_second, 0);
  EXPECT_DOUBLE_EQ(p[0].bytes_per_second, 10);  // 5 bytes in half a second
}

TEST(RateHistory, RingKeepsTheNewestCapacityPointsOldestFirst) {
  RateHistory h(3);
  EXPECT_EQ(h.capacity(), 3u);
  const auto t0 = Clock::time_point{} + 1s;
  int64_t packets = 0;
  h.sample(t0, 0, 0);
  for (int i = 1; i <= 7; ++i) {
    packets += i;  // i packets in second i
    h.sample(t0 + std::chrono::seconds(i), packets, 0);
  }
  auto p = h.points();
  ASSERT_EQ(p.size(), 3u);
  EXPECT_DOUBLE_EQ(p[0].packets_per_second, 5);
  EXPECT_DOUBLE_EQ(p[1].packets_per_second, 6);
  EXPECT_DOUBLE_EQ(p[2].packets_per_second, 7);
}

// ---- render_status_json

StatusInfo sample_info() {
  StatusInfo s;
  s.version = "9.8.7";
  s.server_key = "nodekey:" + std::string(64, 'a');
  s.uptime_seconds = 3661;
  s.counters = {{"gauge_current_connections", 3},
                {"gauge_current_home_connections", 2},
                {"packets_received", 40},
                {"bytes_received", 4000},
                {"packets_sent", 38},
                {"bytes_sent", 3800},
                {"packets_dropped", 2},
                {"bytes_dropped", 200},
                {"packets_dropped_reason_unknown_dest", 2},
                {"packets_dropped_reason_queue_head", 0},
                {"stun_requests_success", 5},
                {"stun_requests_not_stun", 1}};
  s.stun = true;
  s.mesh = {{"relay-b.example:3340", "http://relay-b.example:3340/derp", true},
            {"relay-c.example", "https://relay-c.example/derp", false}};
  s.history = {{1, 100}, {2.25, 200}};
  s.history_capacity = 300;
  s.now_unix = 1'800'000'000;
  return s;
}

TEST(StatusJson, CarriesEveryFigureWithItsType) {
  const json j = json::parse(render_status_json(sample_info(), true));
  EXPECT_EQ(j["version"], "9.8.7");
  EXPECT_EQ(j["server_key"], "nodekey:" + std::string(64, 'a'));
  EXPECT_EQ(j["uptime_seconds"], 3661);
  EXPECT_EQ(j["clients"]["total"], 3);
  EXPECT_EQ(j["clients"]["home"], 2);
  EXPECT_EQ(j["received"]["packets"], 40);
  EXPECT_EQ(j["received"]["bytes"], 4000);
  EXPECT_EQ(j["sent"]["packets"], 38);
  EXPECT_EQ(j["sent"]["bytes"], 3800);
  EXPECT_EQ(j["dropped"]["packets"], 2);
  EXPECT_EQ(j["dropped"]["bytes"], 200);
  EXPECT_EQ(j["dropped"]["reasons"], json({{"unknown_dest", 2}, {"queue_head", 0}}));
  EXPECT_TRUE(j["rate"]["packets_per_second"].is_number());
  EXPECT_DOUBLE_EQ(j["rate"]["packets_per_second"].get<double>(), 2.3);  // the newest, tenths
  EXPECT_DOUBLE_EQ(j["rate"]["bytes_per_second"].get<double>(), 200);
  EXPECT_EQ(j["history"]["interval_seconds"], 1);
  EXPECT_EQ(j["history"]["capacity"], 300);
  EXPECT_EQ(j["history"]["packets_per_second"], json({1.0, 2.3}));
  EXPECT_EQ(j["history"]["bytes_per_second"], json({100.0, 200.0}));
  EXPECT_EQ(j["stun"]["enabled"], true);
  EXPECT_EQ(j["stun"]["requests"], 6);
  EXPECT_EQ(j["stun"]["success"], 5);
  EXPECT_EQ(j["mesh"]["peers"], 2);
  EXPECT_EQ(j["mesh"]["up"], 1);
  EXPECT_TRUE(j["tls"].is_null());
}

TEST(StatusJson, MeshNamesAndUrlsOnlyForDebugAllowedRequests) {
  const std::string open = render_status_json(sample_info(), false);
  EXPECT_EQ(open.find("relay-b"), std::string::npos) << open;
  EXPECT_EQ(open.find("relay-c"), std::string::npos) << open;
  const json j = json::parse(open);
  EXPECT_EQ(j["mesh"]["peers"], 2);
  EXPECT_EQ(j["mesh"]["links"], json::parse(R"([{"up":true},{"up":false}])"));

  const json d = json::parse(render_status_json(sample_info(), true));
  ASSERT_EQ(d["mesh"]["links"].size(), 2u);
  EXPECT_EQ(d["mesh"]["links"][0]["name"], "relay-b.example:3340");
  EXPECT_EQ(d["mesh"]["links"][0]["url"], "http://relay-b.example:3340/derp");
  EXPECT_EQ(d["mesh"]["links"][0]["up"], true);
  EXPECT_EQ(d["mesh"]["links"][1]["name"], "relay-c.example");
  EXPECT_EQ(d["mesh"]["links"][1]["up"], false);
}

TEST(StatusJson, TlsExpiryWhenServingTls) {
  StatusInfo s = sample_info();
  s.tls_not_after = s.now_unix + 86400 * 30;
  const json j = json::parse(render_status_json(s, false));
  EXPECT_EQ(j["tls"]["not_after"], "2027-02-14T08:00:00Z");
  EXPECT_EQ(j["tls"]["not_after_unix"], 1'802'592'000);
  EXPECT_EQ(j["tls"]["expires_in_seconds"], 86400 * 30);
}

TEST(StatusJson, EmptyHistoryMeansZeroRates) {
  StatusInfo s = sample_info();
  s.history.clear();
  const json j = json::parse(render_status_json(s, false));
  EXPECT_EQ(j["rate"]["packets_per_second"], 0.0);
  EXPECT_TRUE(j["history"]["packets_per_second"].is_array());
  EXPECT_TRUE(j["history"]["packets_per_second"].empty());
}

// ---- Routes: /status.json and "/" with derper's --home

Request request(http::verb verb, std::string target) {
  Request req{verb, target, 11};
  req.set(http::field::host, "x");
  return req;
}

struct Routes {
  RouteHooks hooks;
  bool last_debug = false;
  RouteContext ctx(bool debug_allowed) {
    hooks.status_json = [this](bool debug) {
      last_debug = debug;
      return render_status_json(sample_info(), debug);
    };
    RouteContext c;
    c.debug_allowed = debug_allowed;
    c.hooks = &hooks;
    return c;
  }
};

TEST(StatusRoutes, StatusJsonIsPublicJsonAndPassesTheDebugRule) {
  Routes r;
  auto res = route_http(request(http::verb::get, "/status.json"), r.ctx(false));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "application/json");
  EXPECT_EQ(res[http::field::cache_control], "no-store");
  EXPECT_FALSE(r.last_debug);
  EXPECT_EQ(json::parse(res.body())["clients"]["total"], 3);
  EXPECT_EQ(res.body().find("relay-b"), std::string::npos);

  res = route_http(request(http::verb::get, "/status.json?x=1"), r.ctx(true));
  EXPECT_TRUE(r.last_debug);
  EXPECT_NE(res.body().find("relay-b"), std::string::npos);

  res = route_http(request(http::verb::post, "/status.json"), r.ctx(true));
  EXPECT_EQ(res.result(), http::status::method_not_allowed);
  // Without the hook (no running server) there is no such page.
  EXPECT_EQ(route_http(request(http::verb::get, "/status.json")).result(), http::status::not_found);
}

constexpr std::string_view kHomeText =
    "<html><body>\n<h1>DERP</h1>\n<p>\n  This is a\n"
    "  <a href=\"https://tailscale.com/\">Tailscale</a>\n"
    "  <a href=\"https://pkg.go.dev/tailscale.com/derp\">DERP</a>\n  server.\n</p>\n";

TEST(StatusRoutes, DefaultHomeIsDerpersTextThenTheLiveStatusSection) {
  Routes r;
  auto res = route_http(request(http::verb::get, "/"), r.ctx(false));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "text/html; charset=utf-8");
  const std::string& body = res.body();
  EXPECT_EQ(body.rfind(kHomeText, 0), 0u) << body;
  EXPECT_NE(body.find("<h2>Status</h2>"), std::string::npos);
  EXPECT_NE(body.find("fetch(\"/status.json\""), std::string::npos);
  EXPECT_NE(body.find("id=\"card_pps\""), std::string::npos);
  EXPECT_TRUE(body.ends_with("</body>\n</html>\n")) << body.substr(body.size() - 40);
  // Nothing from elsewhere: no external script, style, font or image.
  for (const char* ext : {"src=\"http", "href=\"//", "url(", "@import", "<img", "<iframe"}) {
    EXPECT_EQ(body.find(ext), std::string::npos) << ext;
  }
  EXPECT_EQ(body.find("/debug/"), std::string::npos);  // the debug link is for loopback only
  EXPECT_NE(route_http(request(http::verb::get, "/"), r.ctx(true)).body().find("/debug/"),
            std::string::npos);
  // Without hooks (unit callers): derper's text alone.
  const std::string plain = route_http(request(http::verb::get, "/")).body();
  EXPECT_EQ(plain, std::string(kHomeText) + "</body>\n</html>\n");
}

TEST(StatusRoutes, FaviconIsNoContentSoBrowsersLogNoError) {
  auto res = route_http(request(http::verb::get, "/favicon.ico"));
  EXPECT_EQ(res.result(), http::status::no_content);
  EXPECT_EQ(res[http::field::cache_control], "max-age=86400");
  EXPECT_EQ(res.body(), "");
}

TEST(StatusRoutes, HomeBlankIsAnEmptyHtmlPage) {
  Routes r;
  r.hooks.home = "blank";
  auto res = route_http(request(http::verb::get, "/"), r.ctx(true));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_EQ(res[http::field::content_length], "0");
  EXPECT_EQ(res.body(), "");
  res = route_http(request(http::verb::head, "/"), r.ctx(false));
  EXPECT_EQ(res.result(), http::status::ok);
  EXPECT_EQ(res.count(http::field::content_length), 0u);
  // Only "/" changes: the JSON is still there.
  EXPECT_EQ(route_http(request(http::verb::get, "/status.json"), r.ctx(false)).result(),
            http::status::ok);
}

TEST(StatusRoutes, HomeUrlIsA302AsGosRedirect) {
  Routes r;
  r.hooks.home = "https://example.com/a?b=1&c=\"d\"\xc3\xa9";
  auto res = route_http(request(http::verb::get, "/"), r.ctx(false));
  EXPECT_EQ(res.result(), http::status::found);
  EXPECT_EQ(res[http::field::location], "https://example.com/a?b=1&c=\"d\"%C3%A9");
  EXPECT_EQ(res[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_EQ(res.body(),
            "<a href=\"https://example.com/a?b=1&amp;c=&#34;d&#34;\xc3\xa9\">Found</a>.\n\n");
  EXPECT_EQ(res[http::field::content_length], std::to_string(res.body().size()));

  res = route_http(request(http::verb::head, "/"), r.ctx(false));
  EXPECT_EQ(res.result(), http::status::found);
  EXPECT_EQ(res[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_EQ(res.body(), "");

  res = route_http(request(http::verb::post, "/"), r.ctx(false));
  EXPECT_EQ(res.result(), http::status::found);
  EXPECT_EQ(res.count(http::field::content_type), 0u);
  EXPECT_EQ(res[http::field::content_length], "0");
  EXPECT_EQ(res[http::field::location], "https://example.com/a?b=1&c=\"d\"%C3%A9");
}

}  // namespace
}  // namespace derp::server
