#include "common/duration.h"

#include <gtest/gtest.h>

namespace derp::tools {
namespace {

using namespace std::chrono_literals;

TEST(Duration, ParsesUnitsFractionsAndCombinations) {
  EXPECT_EQ(*parse_duration("250ms"), 250ms);
  EXPECT_EQ(*parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(*parse_duration("2m"), 120s);
  EXPECT_EQ(*parse_duration("1h"), 3600s);
  EXPECT_EQ(*parse_duration("1m30s"), 90s);
  EXPECT_EQ(*parse_duration("10us"), 10us);
  EXPECT_EQ(*parse_duration("7ns"), 7ns);
  EXPECT_EQ(*parse_duration("0"), 0ns);
}

TEST(Duration, BareNumberMeansSeconds) {
  EXPECT_EQ(*parse_duration("5"), 5s);
  EXPECT_EQ(*parse_duration("0.25"), 250ms);
}

TEST(Duration, RejectsGarbageWithClearMessage) {
  for (const char* bad : {"", "abc", "5x", "-1s", "1..5s", "s", "1s2", "ms"}) {
    auto d = parse_duration(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.error().kind, ErrorKind::kUsage);
    EXPECT_EQ(d.error().message.rfind("bad duration \"", 0), 0u) << d.error().message;
  }
  EXPECT_NE(parse_duration("5parsecs").error().message.find("unknown unit \"parsecs\""),
            std::string::npos);
}

TEST(Duration, MillisRoundUp) {
  EXPECT_EQ(to_millis(1us), 1ms);
  EXPECT_EQ(to_millis(1500us), 2ms);
  EXPECT_EQ(to_millis(3s), 3000ms);
}

}  // namespace
}  // namespace derp::tools
