// The failure taxonomy's detail: hints derived from the layer, HTTP status and TLS reason, and
// the --json error object carrying them (tools/common/exit_codes.h, json_output.h).
#include <gtest/gtest.h>

#include "common/exit_codes.h"
#include "common/json_output.h"

namespace derp::tools {
namespace {

Error http(int status) {
  Error e(ErrorKind::kHttp, "HTTP " + std::to_string(status) + " from 127.0.0.1:9: x");
  e.http_status = status;
  return e;
}

Error tls(std::string reason) {
  Error e(ErrorKind::kTls, "TLS handshake with 127.0.0.1:9: certificate verify failed: " + reason);
  e.tls_reason = std::move(reason);
  return e;
}

TEST(FailureHint, HttpStatusHints) {
  EXPECT_EQ(failure_hint(http(404)), "no DERP at this path: check the URL (a relay serves /derp)");
  const std::string stripped =
      "the server answered without switching protocols: a proxy stripped Upgrade: DERP: try "
      "--websocket";
  EXPECT_EQ(failure_hint(http(200)), stripped);
  EXPECT_EQ(failure_hint(http(302)), stripped);
  EXPECT_EQ(failure_hint(http(426)), stripped);  // derper's answer to a request without Upgrade
  EXPECT_NE(failure_hint(http(502)).find("proxy"), std::string::npos);
  EXPECT_EQ(failure_hint(http(500)), "");
  EXPECT_EQ(failure_hint(Error(ErrorKind::kHttp, "bad HTTP response")), "");
}

TEST(FailureHint, TlsReasonHints) {
  EXPECT_NE(failure_hint(tls("certificate has expired")).find("expired"), std::string::npos);
  EXPECT_NE(failure_hint(tls("self-signed certificate")).find("--ca-file"), std::string::npos);
  EXPECT_NE(failure_hint(tls("self signed certificate")).find("--ca-file"), std::string::npos);
  EXPECT_NE(failure_hint(tls("hostname mismatch")).find("--cert-name"), std::string::npos);
  EXPECT_NE(failure_hint(tls("IP address mismatch")).find("--cert-name"), std::string::npos);
  EXPECT_EQ(failure_hint(tls("certificate revoked")), "");
}

TEST(FailureHint, LibraryHintWinsAndOtherLayersHaveNone) {
  Error e = http(404);
  e.hint = "from the library";
  EXPECT_EQ(failure_hint(e), "from the library");
  EXPECT_EQ(failure_hint(Error(ErrorKind::kConnect, "connect to 127.0.0.1:1: refused")), "");
  EXPECT_EQ(failure_hint(Error(ErrorKind::kDns, "resolve x.invalid: host not found")), "");
}

TEST(JsonOutput, ErrorObjectCarriesStatusReasonAndHint) {
  auto j = json_error(http(404));
  EXPECT_EQ(j["schema"], 1);
  EXPECT_EQ(j["ok"], false);
  EXPECT_EQ(j["error"]["layer"], "http");
  EXPECT_EQ(j["error"]["http_status"], 404);
  EXPECT_EQ(j["error"]["hint"], failure_hint(http(404)));
  EXPECT_FALSE(j["error"].contains("tls_reason"));

  auto t = json_error(tls("certificate has expired"));
  EXPECT_EQ(t["error"]["layer"], "tls");
  EXPECT_EQ(t["error"]["tls_reason"], "certificate has expired");
  EXPECT_FALSE(t["error"].contains("http_status"));

  auto c = json_check_failed("assert failed: p99=7.2ms, want <5ms");
  EXPECT_EQ(
      c.dump(),
      R"({"error":{"layer":"check","message":"assert failed: p99=7.2ms, want <5ms"},"ok":false,"schema":1})");
}

}  // namespace
}  // namespace derp::tools
