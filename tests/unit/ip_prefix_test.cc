// net::PrefixList (net/ip_prefix.h): the relay's debug_allow_from rule — parsing, matching of
// IPv4, IPv6 and IPv4-mapped addresses, the canonical text, and the errors on bad entries.
#include "net/ip_prefix.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace derp::net {
namespace {

using Ip16 = std::array<uint8_t, 16>;

Ip16 v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d};
}

PrefixList parse_ok(std::vector<std::string> entries) {
  auto list = PrefixList::parse(entries);
  EXPECT_TRUE(static_cast<bool>(list)) << (list ? "" : list.error().message);
  return list ? *list : PrefixList();
}

TEST(PrefixList, DefaultRuleIsV4LoopbackMappedOrV6Loopback) {
  const PrefixList list = parse_ok({"127.0.0.0/8", "::1"});
  EXPECT_TRUE(list.contains(v4(127, 0, 0, 1)));
  EXPECT_TRUE(list.contains(v4(127, 1, 2, 3)));
  EXPECT_FALSE(list.contains(v4(10, 0, 0, 1)));
  EXPECT_FALSE(list.contains(v4(128, 0, 0, 1)));
  Ip16 v6_one{};
  v6_one[15] = 1;
  EXPECT_TRUE(list.contains(v6_one));
  EXPECT_FALSE(list.contains(Ip16{}));  // ::
  Ip16 other{0x20, 0x01, 0x0d, 0xb8};
  other[15] = 1;
  EXPECT_FALSE(list.contains(other));
  EXPECT_EQ(list.to_string(), "127.0.0.0/8,::1/128");
}

TEST(PrefixList, HostBitsAreMaskedAndOddLengthsWork) {
  // Loopback addresses only (the project's rule for every address a test names).
  const PrefixList list = parse_ok({"127.1.2.3/17", "::1/127"});
  EXPECT_EQ(list.to_string(), "127.1.0.0/17,::/127");
  EXPECT_TRUE(list.contains(v4(127, 1, 127, 255)));
  EXPECT_FALSE(list.contains(v4(127, 1, 128, 0)));
  Ip16 six{};
  six[15] = 1;  // ::1, inside ::/127
  EXPECT_TRUE(list.contains(six));
  six[15] = 2;  // ::2 differs in bit 126
  EXPECT_FALSE(list.contains(six));
}

TEST(PrefixList, BareAddressIsOneHostAndZeroLengthIsEveryone) {
  const PrefixList one = parse_ok({"127.0.0.2"});
  EXPECT_TRUE(one.contains(v4(127, 0, 0, 2)));
  EXPECT_FALSE(one.contains(v4(127, 0, 0, 1)));
  const PrefixList all_v4 = parse_ok({"0.0.0.0/0"});
  EXPECT_TRUE(all_v4.contains(v4(203, 0, 113, 9)));
  Ip16 v6_one{};
  v6_one[15] = 1;
  EXPECT_FALSE(all_v4.contains(v6_one));  // an IPv4 prefix never matches a real IPv6 peer
  EXPECT_TRUE(parse_ok({"::/0"}).contains(v6_one));
}

TEST(PrefixList, EmptyListAllowsNobody) {
  const PrefixList none = parse_ok({});
  EXPECT_TRUE(none.empty());
  EXPECT_FALSE(none.contains(v4(127, 0, 0, 1)));
  EXPECT_EQ(none.to_string(), "none");
}

TEST(PrefixList, BadEntriesAreUsageErrorsNamingTheEntry) {
  for (const char* bad : {"localhost", "127.0.0.0/33", "::1/129", "127.0.0.1/", "127.0.0.1/x",
                          "127.0.0.1/-1", "", "127.0.0.0/8/8"}) {
    std::vector<std::string> entries = {"127.0.0.0/8", bad};
    auto list = PrefixList::parse(entries);
    ASSERT_FALSE(static_cast<bool>(list)) << bad;
    EXPECT_EQ(list.error().kind, ErrorKind::kUsage) << bad;
    EXPECT_NE(list.error().message.find(std::string("\"") + bad + "\""), std::string::npos)
        << list.error().message;
  }
}

}  // namespace
}  // namespace derp::net
