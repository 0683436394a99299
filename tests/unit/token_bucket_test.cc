// The one token bucket of the tree, driven with made-up times (no clock, no sleep).
#include "codec/token_bucket.h"

#include <gtest/gtest.h>

namespace derp {
namespace {

using namespace std::chrono_literals;
using TP = TokenBucket::TimePoint;

const TP t0 = TP(100s);

TEST(TokenBucket, StartsFullAndTakesUpToTheBurst) {
  TokenBucket b(10, 3, t0);
  EXPECT_DOUBLE_EQ(b.available(t0), 3);
  EXPECT_TRUE(b.try_take(1, t0));
  EXPECT_TRUE(b.try_take(2, t0));
  EXPECT_FALSE(b.try_take(1, t0));  // empty: nothing taken
  EXPECT_DOUBLE_EQ(b.available(t0), 0);
}

TEST(TokenBucket, RefillsAtTheRateAndStopsAtTheBurst) {
  TokenBucket b(10, 5, t0);
  ASSERT_TRUE(b.try_take(5, t0));
  EXPECT_NEAR(b.available(t0 + 100ms), 1, 1e-9);
  EXPECT_NEAR(b.available(t0 + 250ms), 2.5, 1e-9);
  EXPECT_DOUBLE_EQ(b.available(t0 + 1h), 5);  // capped
}

TEST(TokenBucket, AFailedTakeLeavesTheTokens) {
  TokenBucket b(1, 3, t0);
  ASSERT_TRUE(b.try_take(2.5, t0));
  EXPECT_FALSE(b.try_take(1, t0));
  EXPECT_DOUBLE_EQ(b.available(t0), 0.5);
  EXPECT_TRUE(b.try_take(1, t0 + 500ms));
}

TEST(TokenBucket, WaitForIsTheTimeUntilTheCostFits) {
  TokenBucket b(1000, 1500, t0);  // bytes: 1000/s, burst 1500
  ASSERT_TRUE(b.try_take(1500, t0));
  const auto w = b.wait_for(1200, t0);
  EXPECT_GE(w, 1200ms);
  EXPECT_LE(w, 1200ms + 1us);
  EXPECT_FALSE(b.try_take(1200, t0 + w - 1ms));
  EXPECT_TRUE(b.try_take(1200, t0 + w));
  EXPECT_EQ(b.wait_for(0, t0 + w), 0ns);
}

TEST(TokenBucket, CostsThatCanNeverFitWaitForever) {
  TokenBucket b(1000, 100, t0);
  EXPECT_EQ(b.wait_for(101, t0), std::chrono::nanoseconds::max());
  TokenBucket stuck(0, 10, t0);
  ASSERT_TRUE(stuck.try_take(10, t0));
  EXPECT_EQ(stuck.wait_for(1, t0 + 1h), std::chrono::nanoseconds::max());
  EXPECT_DOUBLE_EQ(stuck.available(t0 + 1h), 0);
}

TEST(TokenBucket, AClockStepBackMintsNothing) {
  TokenBucket b(10, 10, t0);
  ASSERT_TRUE(b.try_take(10, t0 + 1s));
  EXPECT_DOUBLE_EQ(b.available(t0), 0);           // earlier than the last time seen
  EXPECT_NEAR(b.available(t0 + 1100ms), 1, 1e-9);  // counted from t0 + 1s, not from t0
}

TEST(TokenBucket, TakeMayGoIntoDebtThatLaterWaitsPayOff) {
  TokenBucket b(100, 50, t0);
  b.take(150, t0);  // a cost over the burst, from a full bucket
  EXPECT_DOUBLE_EQ(b.available(t0), -100);
  EXPECT_EQ(b.wait_for(50, t0), std::chrono::nanoseconds(1500ms) + 1ns);
  EXPECT_FALSE(b.try_take(1, t0 + 1s));
  EXPECT_NEAR(b.available(t0 + 1s), 0, 1e-9);
}

TEST(TokenBucket, CanStartWithFewerTokens) {
  TokenBucket b(2, 4, t0, 0);
  EXPECT_DOUBLE_EQ(b.available(t0), 0);
  EXPECT_NEAR(b.available(t0 + 1s), 2, 1e-9);
  TokenBucket over(2, 4, t0, 9);
  EXPECT_DOUBLE_EQ(over.available(t0), 4);
}

TEST(TokenBucket, NegativeSettingsAreZero) {
  TokenBucket b(-5, -1, t0);
  EXPECT_DOUBLE_EQ(b.rate(), 0);
  EXPECT_DOUBLE_EQ(b.burst(), 0);
  EXPECT_TRUE(b.try_take(0, t0));
  EXPECT_FALSE(b.try_take(0.1, t0));
}

}  // namespace
}  // namespace derp
