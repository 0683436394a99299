// The /generate_204 captive-portal challenge rule (PROTOCOL.md §6.5, §10). I/O-free.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace derp {

inline constexpr size_t kMaxCaptiveChallengeLen = 64;

// True when `challenge` may be echoed: 1 to 64 characters, each in [A-Za-z0-9._:-]. An empty
// value counts as "no challenge" (derper only looks at a non-empty header).
bool is_valid_captive_challenge(std::string_view challenge);

// The X-Tailscale-Response value for a challenge ("response <challenge>"), or nullopt when the
// challenge must be ignored (then the relay sends 204 without the header).
std::optional<std::string> captive_challenge_response(std::string_view challenge);

}  // namespace derp
