// The status page in a real browser: headless Chromium (Debian's package) loads "/" from an
// in-process relay, runs its script against /status.json, and must show the figures /metrics
// has, a chart with points, and no console error. Leaves a screenshot in the build tree
// (artifacts/status_page.png) for people to look at.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "derp/server.h"
#include "support/chromium.h"
#include "support/relay_harness.h"
#include "support/scrape.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// A JS promise that resolves once `condition` holds, re-checked on each of the page's updates
// (its "derp-status" event), and rejects after `ms` naming what the page showed.
std::string when(const std::string& condition, int ms) {
  return "new Promise((resolve, reject) => {"
         "  const ok = () => { try { return (" +
         condition +
         "); } catch (e) { return false; } };"
         "  if (ok()) return resolve(true);"
         "  const t = setTimeout(() => reject(new Error('page: ' +"
         "      document.getElementById('ds_state').textContent + ' / sent ' +"
         "      document.getElementById('packets_sent').dataset.value)), " +
         std::to_string(ms) +
         ");"
         "  document.addEventListener('derp-status', function h() {"
         "    if (ok()) { clearTimeout(t); document.removeEventListener('derp-status', h);"
         "                resolve(true); } });"
         "})";
}

TEST(StatusPageBrowser, ChromiumShowsTheFiguresOfMetricsAndAChart) {
  if (::access(Chromium::kBinary, X_OK) != 0) {
    GTEST_SKIP() << "chromium not installed: scripts/install-deps.sh installs it";
  }
  ServerOptions o;
  o.metrics_addr = "127.0.0.1:0";
  auto relay = start_relay(o);
  ASSERT_TRUE(relay);
  auto a = DerpConn::connect(relay->port(), NodePrivate::generate(), relay->public_key());
  auto b = DerpConn::connect(relay->port(), NodePrivate::generate(), relay->public_key());
  ASSERT_TRUE(a && b);

  std::string why;
  auto browser = Chromium::launch(&why);
  ASSERT_TRUE(browser) << why;
  const std::string url = "http://127.0.0.1:" + std::to_string(relay->port()) + "/";
  ASSERT_TRUE(browser->navigate(url, 20s, &why)) << why;

  // A few rounds of traffic, each after the page has shown the previous one, a second apart,
  // so the chart has steps to draw; then one packet nobody can take.
  int sent = 0;
  for (int round = 1; round <= 4; ++round) {
    for (int i = 0; i < 40 * round; ++i, ++sent) {
      ASSERT_TRUE(a->send_packet(b->public_key(), std::vector<uint8_t>(200 * round, 1)));
      ASSERT_TRUE(b->read_frame().has_value());
    }
    // Shown, and on a chart point of its own: the next round then lands in a later second.
    const std::string points = "document.querySelector('#chart_pps .ds-line').points.numberOfItems";
    ASSERT_TRUE(browser->evaluate(
        when("Number(document.getElementById('packets_sent').dataset.value) >= " +
                 std::to_string(sent) + " && " + points + " > (window.seenPoints || 0)",
             10000),
        15s, &why))
        << why;
    ASSERT_TRUE(browser->evaluate("window.seenPoints = " + points, 5s, &why)) << why;
  }
  ASSERT_TRUE(a->send_packet(NodePrivate::generate().public_key(), std::vector<uint8_t>(10, 2)));
  ASSERT_TRUE(a->sync().has_value());  // the relay has routed (and dropped) it

  // The relay is quiet now: what /metrics says is what the page must come to show.
  auto metrics_body = http_get_body(static_cast<uint16_t>(std::stoi(relay->metrics_address().substr(
                                        relay->metrics_address().rfind(':') + 1))),
                                    "/metrics");
  ASSERT_TRUE(metrics_body.has_value());
  const auto m = parse_prometheus(*metrics_body);
  ASSERT_EQ(m.at("derp_packets_sent"), sent);
  auto value_of = [](const std::string& id) {
    return "Number(document.getElementById('" + id + "').dataset.value)";
  };
  const std::string settled =
      value_of("packets_sent") + " === " + std::to_string(m.at("derp_packets_sent")) + " && " +
      value_of("packets_dropped") + " === " + std::to_string(m.at("derp_packets_dropped")) +
      " && document.querySelector('#chart_pps .ds-line').points.numberOfItems >= 2";
  ASSERT_TRUE(browser->evaluate(when(settled, 10000), 15s, &why)) << why;

  auto shown = browser->evaluate(
      "(() => { const v = id => Number(document.getElementById(id).dataset.value);"
      "  const pts = id => document.querySelector('#' + id + ' .ds-line').points.numberOfItems;"
      "  return { packets_sent: v('packets_sent'), bytes_sent: v('bytes_sent'),"
      "    packets_received: v('packets_received'), bytes_received: v('bytes_received'),"
      "    packets_dropped: v('packets_dropped'), clients_total: v('clients_total'),"
      "    clients_home: v('clients_home'), pps_points: pts('chart_pps'),"
      "    bps_points: pts('chart_bps'), updates: Number(document.body.dataset.updates),"
      "    state: document.getElementById('ds_state').textContent,"
      "    key: document.getElementById('server_key').textContent,"
      "    drops: document.getElementById('drops').textContent }; })()",
      5s, &why);
  ASSERT_TRUE(shown.has_value()) << why;
  const json& s = *shown;
  EXPECT_EQ(s["packets_sent"], m.at("derp_packets_sent"));
  EXPECT_EQ(s["bytes_sent"], m.at("derp_bytes_sent"));
  EXPECT_EQ(s["packets_received"], m.at("derp_packets_received"));
  EXPECT_EQ(s["bytes_received"], m.at("derp_bytes_received"));
  EXPECT_EQ(s["packets_dropped"], m.at("derp_packets_dropped"));
  EXPECT_EQ(s["clients_total"], m.at("derp_current_connections"));
  EXPECT_EQ(s["clients_home"], m.at("derp_current_home_connections"));
  EXPECT_GE(s["pps_points"].get<int>(), 2);
  EXPECT_EQ(s["bps_points"], s["pps_points"]);
  EXPECT_GE(s["updates"].get<int>(), 2);  // it did update, more than once
  EXPECT_EQ(s["state"], "Live");
  EXPECT_EQ(s["key"], relay->public_key().to_string());
  EXPECT_NE(s["drops"].get<std::string>().find("unknown dest"), std::string::npos) << s.dump();

  auto png = browser->screenshot_png(&why);
  ASSERT_TRUE(png.has_value()) << why;
  const std::filesystem::path dir = DERP_ARTIFACTS_DIR;
  std::filesystem::create_directories(dir);
  const auto file = dir / "status_page.png";
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(png->data(), static_cast<std::streamsize>(png->size()));
  }
  EXPECT_GT(std::filesystem::file_size(file), 1000u);

  std::string errors;
  for (const auto& e : browser->errors()) errors += e + "\n";
  EXPECT_TRUE(browser->errors().empty()) << errors;
}

}  // namespace
}  // namespace derp::test
