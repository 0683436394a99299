#include "codec/captive_challenge.h"

#include <gtest/gtest.h>

#include <string>

namespace derp {
namespace {

TEST(CaptiveChallenge, EchoesAValidChallenge) {
  EXPECT_EQ(captive_challenge_response("ts_derp99b.tailscale.com"),
            std::optional<std::string>("response ts_derp99b.tailscale.com"));
  EXPECT_EQ(captive_challenge_response("abc123"), std::optional<std::string>("response abc123"));
  EXPECT_EQ(captive_challenge_response("A-Z_a.z:09"),
            std::optional<std::string>("response A-Z_a.z:09"));
}

TEST(CaptiveChallenge, AcceptsExactly64Characters) {
  EXPECT_TRUE(is_valid_captive_challenge(std::string(64, 'x')));
  EXPECT_FALSE(is_valid_captive_challenge(std::string(65, 'x')));
  EXPECT_EQ(captive_challenge_response(std::string(65, 'x')), std::nullopt);
}

TEST(CaptiveChallenge, RejectsCharactersOutsideTheAllowedSet) {
  EXPECT_FALSE(is_valid_captive_challenge("foo bar"));
  EXPECT_FALSE(is_valid_captive_challenge(std::string("foo\0bar", 7)));
  EXPECT_FALSE(is_valid_captive_challenge("abc/123"));
  EXPECT_FALSE(is_valid_captive_challenge("caf\xc3\xa9"));
  EXPECT_EQ(captive_challenge_response("abc/123"), std::nullopt);
}

TEST(CaptiveChallenge, TreatsEmptyAsNoChallenge) {
  EXPECT_FALSE(is_valid_captive_challenge(""));
  EXPECT_EQ(captive_challenge_response(""), std::nullopt);
}

}  // namespace
}  // namespace derp
