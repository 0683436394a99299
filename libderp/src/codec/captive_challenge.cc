#include "codec/captive_challenge.h"

namespace derp {

namespace {
bool allowed(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}
}  // namespace

bool is_valid_captive_challenge(std::string_view challenge) {
  if (challenge.empty() || challenge.size() > kMaxCaptiveChallengeLen) return false;
  for (char c : challenge) {
    if (!allowed(c)) return false;
  }
  return true;
}

std::optional<std::string> captive_challenge_response(std::string_view challenge) {
  if (!is_valid_captive_challenge(challenge)) return std::nullopt;
  std::string out = "response ";
  out.append(challenge);
  return out;
}

}  // namespace derp
