// The captive-portal exchange on arbitrary bytes, both ends: the relay answering
// /generate_204 with the input as X-Tailscale-Challenge (echoed only when valid), and the
// probe's rule for the X-Tailscale-Response it reads back (a response matches its own challenge
// and no other).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "codec/captive_challenge.h"
#include "server/http_routes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const bool valid = derp::is_valid_captive_challenge(text);
  const auto answer = derp::captive_challenge_response(text);
  if (answer.has_value() != valid) std::abort();
  if (valid && size > derp::kMaxCaptiveChallengeLen) std::abort();

  derp::server::Request req{boost::beast::http::verb::get, "/generate_204", 11};
  req.set(boost::beast::http::field::host, "127.0.0.1");
  req.set("X-Tailscale-Challenge", text);
  // The relay sees the header as an HTTP parser hands it over: Beast (as Go's net/http) trims
  // the optional whitespace around a field value, so " ab" arrives as "ab", a valid challenge.
  // The rule is about that value, not the raw bytes (found by this target: crash-c201d77…).
  const std::string_view seen = req["X-Tailscale-Challenge"];
  const bool seen_valid = derp::is_valid_captive_challenge(seen);
  const auto res = derp::server::route_http(req);
  const auto echoed = res.find("X-Tailscale-Response");
  if (seen_valid) {
    if (echoed == res.end() || echoed->value() != *derp::captive_challenge_response(seen)) {
      std::abort();
    }
  } else if (echoed != res.end()) {
    std::abort();
  }
  return 0;
}
