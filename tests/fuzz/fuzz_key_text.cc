// Key text on arbitrary input: nodekey:/privkey: forms, bare hex, mesh keys, from_hex. What
// parses must print back to a text that parses to the same key.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "derp/key.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto k = derp::NodePublic::parse(text); k.ok()) {
    auto again = derp::NodePublic::parse(k->to_string());
    if (!again.ok() || !(*again == *k)) std::abort();
    (void)k->short_string();
  }
  if (auto k = derp::NodePublic::parse_hex(text); k.ok()) {
    auto again = derp::NodePublic::parse_hex(k->hex());
    if (!again.ok() || !(*again == *k)) std::abort();
  }
  (void)derp::NodePublic::parse_any(text);
  if (auto k = derp::NodePrivate::parse(text); k.ok()) {
    auto again = derp::NodePrivate::parse(k->to_string());
    if (!again.ok() || !(*again == *k)) std::abort();
  }
  if (auto k = derp::MeshKey::parse(text); k.ok()) {
    auto again = derp::MeshKey::parse(k->hex());
    if (!again.ok() || !again->equals(*k)) std::abort();
  }
  if (auto b = derp::from_hex(text); b.ok()) {
    const auto* p = reinterpret_cast<const uint8_t*>(b->data());
    if (derp::to_hex(p, b->size()).size() != text.size()) std::abort();
  }
  return 0;
}
