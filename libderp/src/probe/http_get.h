// One HTTP(S) GET through libcurl, for the probe layer: DERP maps, /derp/latency-check,
// /generate_204. Never follows redirects; errors carry the layer that failed.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "derp/result.h"

namespace derp::probe {

struct HttpGet {
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::chrono::milliseconds timeout{5000};
  bool insecure = false;   // no certificate verification (InsecureForTests)
  std::string ca_file;     // extra roots
  std::string resolve;     // "host:port:ip" pins a name to an address (CURLOPT_RESOLVE)
  size_t max_body = 8 << 20;
  bool fresh_connection = true;  // no keep-alive
};

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names; last value wins
  std::string body;                            // at most max_body bytes
  double request_ms = 0;  // request sent → first response byte (TCP/TLS setup excluded)
  std::string primary_ip;  // the address connected to
};

Result<HttpResponse> http_get(const HttpGet& request);

}  // namespace derp::probe
