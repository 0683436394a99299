// The I/O-free pieces of derp-serve's relay behaviour: Go-style flag normalising, the
// fault-injection grammar, the allow-keys file and the admission controller's verdict.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/go_flags.h"
#include "server/admission.h"
#include "server/faults.h"

namespace derp {
namespace {

tools::NormalisedArgs norm(std::vector<const char*> argv) {
  tools::GoFlagPolicy p;
  p.short_names = "ac";
  p.refused = {{"dev", "not here"}};
  argv.insert(argv.begin(), "derp-serve");
  return tools::normalise_go_flags(static_cast<int>(argv.size()), argv.data(), p);
}

TEST(GoFlags, OneDashLongNamesBecomeTwo) {
  auto n = norm({"-stun-port", "0", "-verify-client-url=http://127.0.0.1:1/x", "-stun=false"});
  ASSERT_FALSE(n.error);
  EXPECT_EQ(n.args, (std::vector<std::string>{"derp-serve", "--stun-port", "0",
                                              "--verify-client-url=http://127.0.0.1:1/x",
                                              "--stun=false"}));
}

TEST(GoFlags, ShortNamesTakeEqualsAndTwoDashes) {
  auto n = norm({"-a=127.0.0.1:0", "--c", "k.json", "-v"});
  ASSERT_FALSE(n.error);
  EXPECT_EQ(n.args,
            (std::vector<std::string>{"derp-serve", "-a", "127.0.0.1:0", "-c", "k.json", "-v"}));
}

TEST(GoFlags, NegativeNumbersAndPositionalsAreValues) {
  auto n = norm({"--http-port", "-1", "word", "--", "-dev"});
  ASSERT_FALSE(n.error);
  EXPECT_EQ(n.args, (std::vector<std::string>{"derp-serve", "--http-port", "-1", "word", "--",
                                              "-dev"}));
}

TEST(GoFlags, RefusedFlagIsNamed) {
  for (const char* a : {"-dev", "--dev", "-dev=true"}) {
    auto n = norm({a});
    ASSERT_TRUE(n.error) << a;
    EXPECT_NE(n.error->find("-dev"), std::string::npos) << *n.error;
  }
}

TEST(FaultSpec, ParsesEveryKind) {
  using K = server::FaultSpec::Kind;
  const std::string key = NodePrivate::generate().public_key().to_string();
  EXPECT_EQ(server::parse_fault("clear")->kind, K::kClear);
  auto h = server::parse_fault("health=disk full");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->kind, K::kHealth);
  EXPECT_EQ(h->text, "disk full");
  EXPECT_EQ(server::parse_fault("health=")->text, "");
  auto r = server::parse_fault("restart=250ms,1m");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->reconnect_in.count(), 250);
  EXPECT_EQ(r->try_for.count(), 60000);
  EXPECT_EQ(server::parse_fault("restart")->try_for.count(), 30000);
  EXPECT_EQ(server::parse_fault("drop=25")->percent, 25);
  EXPECT_EQ(server::parse_fault("drop=100%")->percent, 100);
  EXPECT_EQ(server::parse_fault("latency=2s")->latency.count(), 2000);
  EXPECT_EQ(server::parse_fault("close=" + key)->kind, K::kClose);
  EXPECT_EQ(server::parse_fault("stall=" + key)->kind, K::kStall);
  EXPECT_EQ(server::parse_fault("churn=" + key)->key.to_string(), key);
  EXPECT_EQ(server::parse_fault("unstall=" + key)->kind, K::kUnstall);
}

TEST(FaultSpec, OnlyDropLatencyAndHealthApplyAtStartAndTheRestSayWhy) {
  const std::string key = NodePrivate::generate().public_key().to_string();
  for (const std::string ok : {"drop=5", "latency=10ms", "health=x", "health="}) {
    EXPECT_FALSE(server::fault_refused_at_start(*server::parse_fault(ok))) << ok;
  }
  for (const std::string& spec : std::vector<std::string>{"restart", "close=" + key, "stall=" + key,
                                                          "unstall=" + key, "churn=" + key, "clear"}) {
    auto why = server::fault_refused_at_start(*server::parse_fault(spec));
    ASSERT_TRUE(why) << spec;
    EXPECT_NE(why->find(" start"), std::string::npos) << *why;
  }
}

TEST(FaultSpec, RefusesGarbageWithReason) {
  for (const char* bad : {"", "drop", "drop=101", "drop=x", "latency=5x", "close=nodekey:zz",
                          "stall", "unstall", "explode", "restart=1s,", "clear=1"}) {
    auto f = server::parse_fault(bad);
    ASSERT_FALSE(f) << bad;
    EXPECT_EQ(f.error().kind, ErrorKind::kUsage);
    EXPECT_NE(f.error().message.find("fault"), std::string::npos);
  }
}

TEST(FaultState, DropsAboutTheAskedShareAndNoneWhenOff) {
  server::FaultState s;
  EXPECT_FALSE(s.any());
  s.set_drop_percent(100);
  EXPECT_TRUE(s.any());
  EXPECT_TRUE(s.should_drop());
  s.set_drop_percent(50);
  int dropped = 0;
  for (int i = 0; i < 10000; ++i) dropped += s.should_drop() ? 1 : 0;
  EXPECT_GT(dropped, 4000);
  EXPECT_LT(dropped, 6000);
  s.set_drop_percent(0);
  EXPECT_FALSE(s.any());
}

TEST(AllowKeys, ParsesKeysCommentsAndBlankLines) {
  const auto a = NodePrivate::generate().public_key();
  const auto b = NodePrivate::generate().public_key();
  const std::string text = "# allowed\n" + a.to_string() + "\n\n  " + b.to_string() +
                           "  # laptop\r\n";
  auto keys = server::parse_allow_keys(text, "f");
  ASSERT_TRUE(keys) << keys.error().message;
  EXPECT_EQ(keys->size(), 2u);
  EXPECT_EQ(keys->count(a), 1u);
  EXPECT_EQ(keys->count(b), 1u);
}

TEST(AllowKeys, BadLineIsNamed) {
  auto keys = server::parse_allow_keys("# ok\nnodekey:1234\n", "keys.txt");
  ASSERT_FALSE(keys);
  EXPECT_NE(keys.error().message.find("keys.txt:2"), std::string::npos) << keys.error().message;
}

TEST(AdmissionVerdict, OnlyOkWithAllowTrueAdmits) {
  EXPECT_FALSE(server::admission_verdict(200, R"({"Allow":true})"));
  EXPECT_TRUE(server::admission_verdict(200, R"({"Allow":false})"));
  EXPECT_TRUE(server::admission_verdict(200, R"({})"));
  EXPECT_TRUE(server::admission_verdict(200, "not json"));
  EXPECT_TRUE(server::admission_verdict(403, R"({"Allow":true})"));
}

}  // namespace
}  // namespace derp
