// net::DialDeadline: the one deadline of a multi-step dial, also the path of cancellation. A
// step that registers its cancel action after the deadline was aborted or expired (between two
// steps, when nothing was registered) must be cancelled at once, not run to its end.
#include "net/dial_deadline.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

namespace derp::net {
namespace {

using namespace std::chrono_literals;

TEST(DialDeadline, AbortRunsTheCancelOfTheStepInProgress) {
  boost::asio::io_context io;
  DialDeadline d(io.get_executor(), 60s);
  int cancels = 0;
  d.on_expiry([&] { ++cancels; });
  EXPECT_EQ(cancels, 0);
  d.abort();
  EXPECT_EQ(cancels, 1);
  EXPECT_TRUE(d.expired());
}

TEST(DialDeadline, AStepRegisteredAfterAnAbortIsCancelledAtOnce) {
  boost::asio::io_context io;
  DialDeadline d(io.get_executor(), 60s);
  d.on_expiry([] {});
  d.on_expiry(nullptr);  // the first step finished
  d.abort();             // cancelled between two steps
  int cancels = 0;
  d.on_expiry([&] { ++cancels; });  // the next step starts
  EXPECT_EQ(cancels, 1);
  d.on_expiry(nullptr);  // clearing never cancels
  EXPECT_EQ(cancels, 1);
}

TEST(DialDeadline, AStepRegisteredAfterExpiryIsCancelledAtOnce) {
  boost::asio::io_context io;
  DialDeadline d(io.get_executor(), 1ms);
  io.run();  // returns once the timer has fired: nothing else is pending
  ASSERT_TRUE(d.expired());
  int cancels = 0;
  d.on_expiry([&] { ++cancels; });
  EXPECT_EQ(cancels, 1);
}

TEST(DialDeadline, AFinishedDialIsNeverCancelled) {
  boost::asio::io_context io;
  int cancels = 0;
  {
    DialDeadline d(io.get_executor(), 1ms);
    d.on_expiry([&] { ++cancels; });
    d.on_expiry(nullptr);
  }  // destroyed before expiry: the timer is cancelled
  io.run();
  EXPECT_EQ(cancels, 0);
}

}  // namespace
}  // namespace derp::net
