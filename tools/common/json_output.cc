#include "common/json_output.h"

#include <cstdio>
#include <iostream>

#include "common/exit_codes.h"

namespace derp::tools {

nlohmann::json json_ok() { return {{"schema", kJsonSchema}, {"ok", true}}; }

nlohmann::json json_error(const Error& error) {
  nlohmann::json e = {{"layer", error_kind_name(error.kind)}, {"message", error.message}};
  if (std::string hint = failure_hint(error); !hint.empty()) e["hint"] = std::move(hint);
  if (error.http_status != 0) e["http_status"] = error.http_status;
  if (!error.tls_reason.empty()) e["tls_reason"] = error.tls_reason;
  return {{"schema", kJsonSchema}, {"ok", false}, {"error", std::move(e)}};
}

nlohmann::json json_check_failed(const std::string& message, const std::string& hint) {
  nlohmann::json e = {{"layer", kCheckLayer}, {"message", message}};
  if (!hint.empty()) e["hint"] = hint;
  return {{"schema", kJsonSchema}, {"ok", false}, {"error", std::move(e)}};
}

void print_json_line(const nlohmann::json& object) {
  // Invalid UTF-8 inside strings is replaced rather than aborting the tool.
  std::cout << object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n'
            << std::flush;
}

bool is_printable_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return false;
      ++i;
      continue;
    }
    size_t len = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    if (len == 2 && c < 0xC2) return false;  // overlong
    for (size_t k = 1; k < len; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

}  // namespace derp::tools
