// What an unauthenticated peer can reach (docs/SECURITY.md, "Who can reach what"): /debug/ and
// the status page's mesh detail only from debug_allow_from addresses, POST /debug/fault only
// with fault_endpoint on, / (aggregates), /status.json, probes and --metrics-addr for anyone.
// A peer outside the list is simulated with a second loopback address (127.0.0.2): the relay
// sees a different TCP peer, exactly as it would see a remote one.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "derp/server.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr const char* kLocal = "127.0.0.1";
constexpr const char* kOther = "127.0.0.2";

std::string access_request(uint16_t port, const char* from, const std::string& head) {
  RawConn raw(port, from);
  EXPECT_TRUE(raw.ok());
  EXPECT_TRUE(raw.write(head));
  return raw.read_http_response().value_or("");
}

std::string access_get(uint16_t port, const char* from, const std::string& path) {
  return access_request(port, from, "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
}

std::string access_post_fault(uint16_t port, const char* from, const std::string& spec) {
  return access_request(
      port, from,
      "POST /debug/fault?" + spec + " HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
}

bool access_status_is(const std::string& res, int code) {
  return res.rfind("HTTP/1.1 " + std::to_string(code) + " ", 0) == 0;
}

std::string access_body(const std::string& res) {
  const auto p = res.find("\r\n\r\n");
  return p == std::string::npos ? "" : res.substr(p + 4);
}

// A relay with a (down) mesh link, so /status.json has mesh detail to hide or show.
std::unique_ptr<Server> access_relay(std::vector<std::string> allow, bool fault_endpoint) {
  ServerOptions o;
  o.debug_allow_from = std::move(allow);
  o.fault_endpoint = fault_endpoint;
  o.mesh_key = MeshKey::parse(std::string(64, 'a')).value();
  o.mesh_with = {"127.0.0.1:1"};  // nothing listens there: a link that stays down
  o.metrics_addr = "127.0.0.1:0";
  return start_relay(o);
}

TEST(RelayAccess, DebugEndpointsAnswerOnlyListedPeers) {
  auto relay = access_relay({"127.0.0.2/32"}, true);
  ASSERT_TRUE(relay);
  for (const char* path : {"/debug/", "/debug/vars", "/debug/varz"}) {
    const std::string denied = access_get(relay->port(), kLocal, path);
    EXPECT_TRUE(access_status_is(denied, 403)) << path << ": " << denied;
    EXPECT_EQ(access_body(denied), "debug access denied\n") << path;
    EXPECT_TRUE(access_status_is(access_get(relay->port(), kOther, path), 200)) << path;
  }
  EXPECT_TRUE(access_status_is(access_post_fault(relay->port(), kLocal, "health=x"), 403));
  const std::string applied = access_post_fault(relay->port(), kOther, "health=from%20ops");
  EXPECT_TRUE(access_status_is(applied, 200)) << applied;
}

TEST(RelayAccess, PublicRoutesAnswerEveryoneWithoutDebugDetail) {
  auto relay = access_relay({"127.0.0.2/32"}, false);
  ASSERT_TRUE(relay);
  EXPECT_TRUE(access_status_is(access_get(relay->port(), kLocal, "/derp/probe"), 200));
  EXPECT_TRUE(access_status_is(access_get(relay->port(), kLocal, "/generate_204"), 204));

  const std::string home_out = access_get(relay->port(), kLocal, "/");
  ASSERT_TRUE(access_status_is(home_out, 200)) << home_out;
  EXPECT_EQ(access_body(home_out).find("/debug/"), std::string::npos);
  EXPECT_NE(access_body(access_get(relay->port(), kOther, "/")).find("href='/debug/'"),
            std::string::npos);

  const auto out =
      nlohmann::json::parse(access_body(access_get(relay->port(), kLocal, "/status.json")));
  ASSERT_EQ(out["mesh"]["links"].size(), 1u) << out.dump();
  EXPECT_FALSE(out["mesh"]["links"][0].contains("url")) << out.dump();
  EXPECT_FALSE(out["mesh"]["links"][0].contains("name")) << out.dump();
  const auto in =
      nlohmann::json::parse(access_body(access_get(relay->port(), kOther, "/status.json")));
  ASSERT_EQ(in["mesh"]["links"].size(), 1u) << in.dump();
  EXPECT_NE(in["mesh"]["links"][0].value("url", "").find("127.0.0.1:1"), std::string::npos)
      << in.dump();

  // The metrics listener is for anyone who can reach it (bind it accordingly).
  const std::string metrics = relay->metrics_address();
  const auto port = static_cast<uint16_t>(std::stoi(metrics.substr(metrics.rfind(':') + 1)));
  const std::string scraped = access_get(port, kOther, "/metrics");
  EXPECT_TRUE(access_status_is(scraped, 200)) << scraped;
  EXPECT_NE(access_body(scraped).find("derp_accepts"), std::string::npos);
}

TEST(RelayAccess, DefaultIsLoopbackAndTheFaultEndpointIsOff) {
  auto relay = start_relay({});
  ASSERT_TRUE(relay);
  EXPECT_TRUE(access_status_is(access_get(relay->port(), kLocal, "/debug/vars"), 200));
  EXPECT_TRUE(access_status_is(access_get(relay->port(), kOther, "/debug/vars"),
                               200));  // 127/8 is loopback
  const std::string off = access_post_fault(relay->port(), kLocal, "drop=100");
  EXPECT_TRUE(access_status_is(off, 404)) << off;
  EXPECT_EQ(access_body(off), "fault injection is off: start the relay with --fault-endpoint\n");
  EXPECT_EQ(access_body(access_get(relay->port(), kLocal, "/debug/")).find("/debug/fault"),
            std::string::npos);
  // The library call and start-time faults are not the endpoint: they still work.
  EXPECT_TRUE(relay->apply_fault("drop=0"));
}

TEST(RelayAccess, EmptyListAllowsNobodyAndBadEntriesFailStart) {
  auto relay = access_relay({}, true);
  ASSERT_TRUE(relay);
  EXPECT_TRUE(access_status_is(access_get(relay->port(), kLocal, "/debug/vars"), 403));
  EXPECT_TRUE(access_status_is(access_post_fault(relay->port(), kLocal, "drop=1"), 403));

  ServerOptions o;
  o.private_key = NodePrivate::generate();
  o.listen_addr = "127.0.0.1:0";
  o.debug_allow_from = {"127.0.0.0/8", "localhost"};
  auto refused = Server::start(o);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind, ErrorKind::kUsage);
  EXPECT_NE(refused.error().message.find("debug_allow_from \"localhost\": not an IP address"),
            std::string::npos)
      << refused.error().message;
}

// derp-serve's flags, as an operator types them.
class DerpServeAccess : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-access-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Starts derp-serve with extra flags; returns its port (0 on failure).
  uint16_t serve(std::unique_ptr<Child>& child, std::vector<std::string> extra) {
    std::vector<std::string> argv = {std::string(DERP_BIN_DIR) + "/derp-serve",
                                     "-a",
                                     "127.0.0.1:0",
                                     "--stun=false",
                                     "-c",
                                     dir_ + "/k"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    child = Child::spawn(argv, dir_);
    if (!child) return 0;
    const auto line = child->read_stdout_line();
    std::smatch m;
    if (!line || !std::regex_search(*line, m, std::regex("http://127\\.0\\.0\\.1:([0-9]+)/"))) {
      ADD_FAILURE() << child->stderr_text();
      return 0;
    }
    return static_cast<uint16_t>(std::stoi(m[1].str()));
  }
  std::string dir_;
};

TEST_F(DerpServeAccess, FlagsSetTheListAndTheFaultEndpoint) {
  std::unique_ptr<Child> child;
  const uint16_t port = serve(child, {"--debug-allow-from", "127.0.0.2", "--fault-endpoint"});
  ASSERT_NE(port, 0);
  EXPECT_TRUE(access_status_is(access_get(port, kLocal, "/debug/vars"), 403));
  EXPECT_TRUE(access_status_is(access_post_fault(port, kOther, "health=x"), 200));
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait(), 0) << child->stderr_text();

  std::unique_ptr<Child> plain;
  const uint16_t port2 = serve(plain, {"-debug-allow-from=none"});  // derper-style spelling
  ASSERT_NE(port2, 0);
  EXPECT_TRUE(access_status_is(access_get(port2, kLocal, "/debug/vars"), 403));
  EXPECT_TRUE(access_status_is(access_post_fault(port2, kLocal, "health=x"), 403));
  plain->signal(SIGTERM);
  EXPECT_EQ(plain->wait(), 0) << plain->stderr_text();
}

}  // namespace
}  // namespace derp::test
