// Wording shared by the client's error messages (dial, TLS, upgrade, DERP).
#pragma once

#include <chrono>
#include <string>

namespace derp::net {

// "Connection refused" → "connection refused": messages read as one sentence.
std::string lower_first(std::string s);

// "10s", "250ms", "1.5s": for messages.
std::string format_duration(std::chrono::milliseconds d);

}  // namespace derp::net
