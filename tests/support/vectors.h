// Access to the captured DERP transcripts in tests/vectors/ (see tests/vectors/README.md).
// Helpers for tests only: failures throw std::runtime_error, which GoogleTest reports as a
// test failure naming the file and field.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "derp/key.h"

namespace derp::test {

// Parses tests/vectors/<name> ("ping" or "ping.json").
nlohmann::json load_vector(std::string_view name);
// Every vector file name ("ping.json", ...), sorted.
std::vector<std::string> vector_names();

// Hex (either case, no separators) to bytes; throws on odd length or a non-hex digit.
std::vector<uint8_t> unhex(std::string_view hex);
// Bytes to lower-case hex.
std::string hexs(std::span<const uint8_t> bytes);

// The vector's key named `name` ("server", "client_A", "client_B", "watcher", "nobody").
NodePrivate private_key(const nlohmann::json& vector, std::string_view name);
NodePublic public_key(const nlohmann::json& vector, std::string_view name);

// True for connections that carry DERP frames (they have c2s/s2c_derp_offset); the
// http_endpoints connections do not.
bool is_derp_connection(const nlohmann::json& conn);
// The whole byte streams of one connection, HTTP head included.
std::vector<uint8_t> c2s_raw(const nlohmann::json& conn);
std::vector<uint8_t> s2c_raw(const nlohmann::json& conn);
// The DERP part only: the raw stream from *_derp_offset on.
std::vector<uint8_t> c2s_frames_bytes(const nlohmann::json& conn);
std::vector<uint8_t> s2c_frames_bytes(const nlohmann::json& conn);
// One recorded frame's payload (from its "payload_hex").
std::vector<uint8_t> frame_payload(const nlohmann::json& frame);

}  // namespace derp::test
