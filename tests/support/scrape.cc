#include "support/scrape.h"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>

#include "support/relay_harness.h"

namespace derp::test {

std::optional<std::string> http_get_body(uint16_t port, const std::string& path,
                                         const std::string& want_status) {
  RawConn raw(port);
  if (!raw.ok()) return std::nullopt;
  if (!raw.write("GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")) {
    return std::nullopt;
  }
  auto res = raw.read_http_response();
  if (!res) return std::nullopt;
  EXPECT_EQ(res->rfind("HTTP/1.1 " + want_status + "\r\n", 0), 0u) << *res;
  const auto head_end = res->find("\r\n\r\n");
  if (head_end == std::string::npos) return std::nullopt;
  return res->substr(head_end + 4);
}

std::map<std::string, int64_t> parse_prometheus(const std::string& body) {
  static const std::regex kType("# TYPE (derp|stun|tls_listener)_[a-zA-Z0-9_:]+ (counter|gauge)");
  static const std::regex kSample(
      "((?:derp|stun|tls_listener)_[a-zA-Z0-9_:]+)(\\{([a-zA-Z_][a-zA-Z0-9_]*)=\"([^\"\\\\]*)\"\\})"
      "? "
      "(-?[0-9]+)");
  std::map<std::string, int64_t> out;
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, kType)) continue;
    if (std::regex_match(line, m, kSample)) {
      std::string key = m[1];
      if (m[2].matched) key += "{" + m[3].str() + "=" + m[4].str() + "}";
      out[key] = std::stoll(m[5]);
      continue;
    }
    ADD_FAILURE() << "not Prometheus text: " << line;
  }
  return out;
}

}  // namespace derp::test
