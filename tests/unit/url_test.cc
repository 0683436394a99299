#include "net/url.h"

#include <gtest/gtest.h>

#include "net/http_upgrade_client.h"

namespace derp::net {
namespace {

TEST(DerpUrl, DefaultsPortBySchemeAndPathToDerp) {
  auto u = parse_derp_url("http://derp.example.com");
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->host, "derp.example.com");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/derp");
  EXPECT_EQ(u->host_header(), "derp.example.com");
  EXPECT_EQ(u->to_string(), "http://derp.example.com:80/derp");
  auto s = parse_derp_url("HTTPS://derp.example.com/");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->tls);
  EXPECT_EQ(s->port, 443);
  EXPECT_EQ(s->target, "/");
}

TEST(DerpUrl, ExplicitPortPathAndIpv6) {
  auto u = parse_derp_url("http://127.0.0.1:3340/derp");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->port, 3340);
  EXPECT_EQ(u->host_port(), "127.0.0.1:3340");
  EXPECT_EQ(u->host_header(), "127.0.0.1:3340");
  auto v6 = parse_derp_url("http://[::1]:8080/x?y=1");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->host_port(), "[::1]:8080");
  EXPECT_EQ(v6->target, "/x?y=1");
}

TEST(DerpUrl, RejectsBadUrlsWithUsageErrors) {
  for (const char* bad :
       {"", "derp.example.com", "ftp://x/derp", "http://", "http://:80", "http://host:0",
        "http://host:65536", "http://host:12ab", "http://user@host/", "http://[::1",
        "http://ho st/", "http://host/#frag", "http://ho$t/"}) {
    auto u = parse_derp_url(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_EQ(u.error().kind, ErrorKind::kUsage) << bad;
    EXPECT_EQ(u.error().message.rfind("bad server URL \"", 0), 0u) << u.error().message;
  }
}

TEST(DerpUrl, UnbracketedIpv6SaysBracketsAreNeeded) {
  for (const char* bad : {"http://::1:38181", "https://::1/derp", "http://::1"}) {
    auto u = parse_derp_url(bad);
    ASSERT_FALSE(u.ok()) << bad;
    EXPECT_NE(u.error().message.find("an IPv6 address must be in brackets"), std::string::npos)
        << u.error().message;
    EXPECT_EQ(u.error().message.find("missing host"), std::string::npos) << u.error().message;
  }
  ASSERT_TRUE(parse_derp_url("http://[::1]:38181").ok());
}

TEST(UpgradeRequest, HasGoHeaderOrderAndUpgradeDerp) {
  auto u = parse_derp_url("http://127.0.0.1:3340/derp");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(build_upgrade_request(*u, "libderp/test"),
            "GET /derp HTTP/1.1\r\nHost: 127.0.0.1:3340\r\nUser-Agent: libderp/test\r\n"
            "Connection: Upgrade\r\nUpgrade: DERP\r\n\r\n");
}

}  // namespace
}  // namespace derp::net
