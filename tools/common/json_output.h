// --json output: one JSON object per run (or one per line for streams), always with
// "schema": 1 and "ok"; failures carry "error": {"layer": <error_kind_name>, "message": ...}.
#pragma once

#include <nlohmann/json.hpp>

#include "derp/result.h"

namespace derp::tools {

inline constexpr int kJsonSchema = 1;

// {"schema":1,"ok":true}
nlohmann::json json_ok();
// {"schema":1,"ok":false,"error":{"layer":"connect","message":"..."}}, plus in "error" when
// known: "hint" (failure_hint()), "http_status" (kHttp), "tls_reason" (kTls verification).
nlohmann::json json_error(const Error& error);
// A check failure (exit 1): {"schema":1,"ok":false,"error":{"layer":"check","message":"..."}}
// (plus "hint" when not empty).
nlohmann::json json_check_failed(const std::string& message, const std::string& hint = "");
// Writes one compact line to stdout and flushes (readers may be waiting on it).
void print_json_line(const nlohmann::json& object);

// A packet payload for JSON: UTF-8 text when valid (and free of control characters other than
// tab/newline), for the "text" field; std::nullopt otherwise.
bool is_printable_utf8(std::string_view bytes);

}  // namespace derp::tools
