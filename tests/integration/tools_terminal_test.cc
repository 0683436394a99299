// The tools at a terminal (a real pseudo-terminal, support/pty.h) against a loopback relay:
// derp-bench's live progress line, colour on and off (NO_COLOR, --no-color, TERM=dumb), and
// the same runs piped or with --json printing nothing extra. derp-probe's and derp-watch's
// terminal tests live with their fixtures (probe_test.cc, mesh_test.cc).
#include <gtest/gtest.h>

#include <regex>

#include "derp/server.h"
#include "support/process.h"
#include "support/pty.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

bool has_colour(const std::string& s) {
  static const std::regex kColour("\x1b\\[[0-9;]*m");  // SGR; the progress erase ESC[K is none
  return std::regex_search(s, kColour);
}

class ToolsTerminal : public ::testing::Test {
 protected:
  void SetUp() override {
    relay_ = start_relay(ServerOptions{});
    ASSERT_TRUE(relay_);
    url_ = "http://127.0.0.1:" + std::to_string(relay_->port()) + "/derp";
  }
  std::unique_ptr<Server> relay_;
  std::string url_;
};

TEST(ToolsTerminalFlags, EveryToolTakesNoColor) {
  for (const char* tool : {"derp-bench", "derp-captive", "derp-connect", "derp-keygen", "derp-ping",
                           "derp-probe", "derp-recv", "derp-send", "derp-watch"}) {
    auto r = run_tool(tool, {"--no-color", "--version"});
    EXPECT_EQ(r.exit_code, 0) << tool << ": " << r.err;
  }
  // derp-serve takes derper's one-dash spelling too (it prints no colour: accepted, no effect).
  for (const char* flag : {"--no-color", "-no-color"}) {
    auto r = run_tool("derp-serve", {flag, "--version"});
    EXPECT_EQ(r.exit_code, 0) << flag << ": " << r.err;
  }
}

TEST_F(ToolsTerminal, BenchDrawsItsRunOnATerminalAndNothingExtraPiped) {
  const std::vector<std::string> args = {url_, "--duration", "1s", "--warmup", "200ms"};
  auto tty = run_tool_on_pty("derp-bench", args);
  ASSERT_EQ(tty.exit_code, 0) << tty.bytes;
  // What runs, and how far into the expected 1.2 s, redrawn in place.
  EXPECT_TRUE(std::regex_search(
      tty.bytes, std::regex("\r\x1b\\[Kderp-bench: load: 1 pair\\(s\\) x 1200 B, 200ms warm-up "
                            "\\+ 1s measured  0\\.[1-9]s/1\\.2s")))
      << tty.bytes;
  // Erased before the result, which starts on a clean line.
  EXPECT_NE(tty.bytes.find("\r\x1b[K" + url_ + ": 1 pairs x 1200 B"), std::string::npos)
      << tty.bytes;

  auto piped = run_tool("derp-bench", args);
  ASSERT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(piped.err, "");
  EXPECT_EQ(piped.out.find('\r'), std::string::npos) << piped.out;
  EXPECT_EQ(piped.out.find('\x1b'), std::string::npos) << piped.out;

  std::vector<std::string> json_args = args;
  json_args.push_back("--json");
  auto json_tty = run_tool_on_pty("derp-bench", json_args);
  ASSERT_EQ(json_tty.exit_code, 0) << json_tty.bytes;
  EXPECT_EQ(json_tty.bytes.find('\x1b'), std::string::npos) << json_tty.bytes;
  EXPECT_EQ(json_tty.bytes.rfind("{", 0), 0u) << json_tty.bytes;
  EXPECT_EQ(json_tty.bytes.find('\n'), json_tty.bytes.size() - 1) << "one line";
}

TEST_F(ToolsTerminal, BenchPaintsAViolatedAssertUnlessColourIsOff) {
  const std::vector<std::string> args = {url_, "--duration", "300ms",     "--warmup",
                                         "0s", "--assert",   "sent_pps<1"};
  auto tty = run_tool_on_pty("derp-bench", args);
  ASSERT_EQ(tty.exit_code, 1) << tty.bytes;
  EXPECT_NE(tty.bytes.find("derp-bench: \x1b[1;31m"), std::string::npos) << tty.bytes;
  const std::vector<std::pair<EnvChanges, std::string>> off = {
      {{{"NO_COLOR", "1"}}, ""}, {{}, "--no-color"}, {{{"TERM", "dumb"}}, ""}};
  for (const auto& [env, flag] : off) {
    std::vector<std::string> a = args;
    if (!flag.empty()) a.push_back(flag);
    auto plain = run_tool_on_pty("derp-bench", a, env);
    EXPECT_EQ(plain.exit_code, 1);
    EXPECT_FALSE(has_colour(plain.bytes)) << plain.bytes;
    EXPECT_NE(plain.bytes.find("derp-bench: assert failed: sent_pps"), std::string::npos) << plain.bytes;
  }
  auto piped = run_tool("derp-bench", args);
  EXPECT_EQ(piped.exit_code, 1);
  EXPECT_EQ(piped.err.find('\x1b'), std::string::npos) << piped.err;
}

TEST_F(ToolsTerminal, PingPaintsItsLossSummary) {
  const std::vector<std::string> args = {url_, "--count", "2", "--interval", "10ms"};
  auto tty = run_tool_on_pty("derp-ping", args);
  ASSERT_EQ(tty.exit_code, 0) << tty.bytes;
  EXPECT_NE(tty.bytes.find("2 received, \x1b[32m0.0% loss\x1b[0m"), std::string::npos) << tty.bytes;
  auto plain =
      run_tool_on_pty("derp-ping", {url_, "--count", "2", "--interval", "10ms", "--no-color"});
  EXPECT_EQ(plain.exit_code, 0);
  EXPECT_NE(plain.bytes.find("2 received, 0.0% loss"), std::string::npos) << plain.bytes;
  EXPECT_FALSE(has_colour(plain.bytes)) << plain.bytes;
  auto piped = run_tool("derp-ping", args);
  EXPECT_EQ(piped.exit_code, 0);
  EXPECT_NE(piped.out.find("2 received, 0.0% loss\n"), std::string::npos) << piped.out;
}

}  // namespace
}  // namespace derp::test
