// Reading a relay's HTTP endpoints in tests: one GET over a fresh loopback connection, and
// the Prometheus text of /metrics and /debug/varz parsed into a map.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace derp::test {

// The body of `GET path` on 127.0.0.1:port, after checking the status line (a test failure
// when it differs); nullopt when the request could not be made or answered.
std::optional<std::string> http_get_body(uint16_t port, const std::string& path,
                                         const std::string& want_status = "200 OK");

// Every line of a Prometheus text body, checked and collected: "name" or
// "name{label=value}" -> value. A malformed line fails the test.
std::map<std::string, int64_t> parse_prometheus(const std::string& body);

}  // namespace derp::test
