// tools/common/term: when a stream gets colour or a progress line, and what the progress line
// writes (given a clock, so no time passes for real).
#include "common/term.h"

#include <gtest/gtest.h>

#include <sstream>

#include "common/cli.h"

namespace derp::tools {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::steady_clock::time_point;

TermFacts tty() {
  TermFacts f;
  f.is_tty = true;
  f.term_env = "xterm-256color";
  return f;
}

TEST(TermPolicy, ColourOnlyOnATerminalNobodyTurnedItOffOn) {
  EXPECT_TRUE(colour_allowed(tty()));
  TermFacts f = tty();
  f.is_tty = false;
  EXPECT_FALSE(colour_allowed(f)) << "piped";
  f = tty();
  f.json = true;
  EXPECT_FALSE(colour_allowed(f)) << "--json";
  f = tty();
  f.no_color_flag = true;
  EXPECT_FALSE(colour_allowed(f)) << "--no-color";
  f = tty();
  f.term_env = "dumb";
  EXPECT_FALSE(colour_allowed(f)) << "TERM=dumb";
  f = tty();
  f.term_env = "";
  EXPECT_TRUE(colour_allowed(f)) << "TERM unset";
}

TEST(TermPolicy, AnyNonEmptyNoColorTurnsColourOff) {
  for (const char* v : {"1", "0", "false", "yes"}) {
    TermFacts f = tty();
    f.no_color_env = v;
    EXPECT_FALSE(colour_allowed(f)) << "NO_COLOR=" << v;
  }
  TermFacts f = tty();
  f.no_color_env = "";
  EXPECT_TRUE(colour_allowed(f)) << "NO_COLOR set but empty";
}

TEST(TermPolicy, ProgressOnATerminalEvenWithoutColour) {
  EXPECT_TRUE(progress_allowed(tty()));
  TermFacts f = tty();
  f.no_color_flag = true;
  f.no_color_env = "1";
  EXPECT_TRUE(progress_allowed(f));
  f = tty();
  f.is_tty = false;
  EXPECT_FALSE(progress_allowed(f));
  f = tty();
  f.json = true;
  EXPECT_FALSE(progress_allowed(f));
  f = tty();
  f.term_env = "dumb";
  EXPECT_FALSE(progress_allowed(f));
}

TEST(TermPolicy, EveryToolCliTakesNoColor) {
  for (bool given : {false, true}) {
    ToolCli cli("derp-test", "test");
    std::vector<std::string> args = {"derp-test"};
    if (given) args.push_back("--no-color");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    EXPECT_EQ(cli.parse(static_cast<int>(argv.size()), argv.data()), std::nullopt);
    EXPECT_EQ(cli.no_color(), given);
  }
}

TEST(TermPalette, PaintsWithSgrOnlyWhenEnabled) {
  EXPECT_EQ(Palette(true).good("ok"), "\x1b[32mok\x1b[0m");
  EXPECT_EQ(Palette(true).bad("FAIL"), "\x1b[1;31mFAIL\x1b[0m");
  EXPECT_EQ(Palette(true).paint("slow", Tone::kWarn), "\x1b[33mslow\x1b[0m");
  EXPECT_EQ(Palette(false).good("ok"), "ok");
  EXPECT_EQ(Palette(false).bad("FAIL"), "FAIL");
}

// A progress line on a string, with a clock the test moves.
struct FakeLine {
  explicit FakeLine(bool enabled = true, int columns = 0)
      : line(out, enabled, "tool", columns, [this] { return now; }) {}
  // Starts the line and drops its first draw.
  void start_unseen(std::string text) {
    line.start(std::move(text));
    take();
  }
  std::string take() {
    std::string s = out.str();
    out.str("");
    return s;
  }
  std::ostringstream out;
  TimePoint now{};
  ProgressLine line;
};

TEST(TermProgressLine, DrawsInPlaceAndErasesWhenFinished) {
  FakeLine f;
  f.line.start("netcheck 0/3 regions", 5s);
  EXPECT_EQ(f.take(), "\r\x1b[Ktool: netcheck 0/3 regions  0.0s/5.0s");
  f.now += 260ms;
  f.line.update("netcheck 1/3 regions");
  EXPECT_EQ(f.take(), "\r\x1b[Ktool: netcheck 1/3 regions  0.3s/5.0s");
  f.line.finish();
  EXPECT_EQ(f.take(), "\r\x1b[K");
  f.line.update("late");
  f.line.tick();
  f.line.finish();
  EXPECT_EQ(f.take(), "") << "nothing after finish()";
}

TEST(TermProgressLine, RedrawsAtMostEveryHundredMilliseconds) {
  FakeLine f;
  f.start_unseen("a");
  f.now += 30ms;
  f.line.update("b");
  f.now += 30ms;
  f.line.update("c");
  f.line.tick();
  EXPECT_EQ(f.take(), "") << "too soon after the last draw";
  f.now += 40ms;
  f.line.tick();
  EXPECT_EQ(f.take(), "\r\x1b[Ktool: c  0.1s") << "the latest text, once due";
  f.now += 100ms;
  f.line.tick();
  EXPECT_EQ(f.take(), "\r\x1b[Ktool: c  0.2s") << "the elapsed time moves";
  f.line.tick();
  EXPECT_EQ(f.take(), "") << "drawn this very moment";
}

TEST(TermProgressLine, PrintsAboveOnACleanLineAndTheNextTickDrawsAgain) {
  FakeLine f;
  f.start_unseen("a");
  f.line.print_above([&] { f.out << "tool: a note\n"; });
  EXPECT_EQ(f.take(), "\r\x1b[Ktool: a note\n");
  f.line.print_above([&] { f.out << "another\n"; });
  EXPECT_EQ(f.take(), "another\n") << "nothing left to erase";
  f.line.tick();
  EXPECT_EQ(f.take(), "\r\x1b[Ktool: a  0.0s");
  f.line.finish();
  EXPECT_EQ(f.take(), "\r\x1b[K");
}

TEST(TermProgressLine, NeverWiderThanTheTerminal) {
  FakeLine f(true, 16);
  f.line.start("a long line of progress");
  EXPECT_EQ(f.take(), "\r\x1b[Ktool: a long li");  // 15 columns: the cursor stays on the line
  FakeLine u(true, 10);
  u.line.start("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");  // "éééé": not cut inside a character
  EXPECT_EQ(u.take(), "\r\x1b[Ktool: \xc3\xa9");
}

TEST(TermProgressLine, DisabledWritesNothing) {
  FakeLine f(false);
  EXPECT_FALSE(f.line.enabled());
  f.line.start("a", 1s);
  f.now += 1s;
  f.line.update("b");
  f.line.tick();
  f.line.finish();
  EXPECT_EQ(f.take(), "");
  f.line.print_above([&] { f.out << "a note\n"; });
  EXPECT_EQ(f.take(), "a note\n") << "printed all the same";
}

}  // namespace
}  // namespace derp::tools
