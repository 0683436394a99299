#include "derp/key.h"

#include <fmt/format.h>
#include <sodium.h>

#include <cstring>

#include "codec/sodium_init.h"
#include "codec/text.h"

namespace derp {
namespace {

constexpr std::string_view kNodePublicPrefix = "nodekey:";
constexpr std::string_view kNodePrivatePrefix = "privkey:";

// Decodes exactly 64 hex digits into `out`; false on any other input.
bool parse_key_hex(std::string_view hex, KeyBytes& out) {
  if (hex.size() != 2 * kKeyLen) return false;
  for (size_t i = 0; i < kKeyLen; ++i) {
    int hi = codec::hex_nibble(hex[2 * i]);
    int lo = codec::hex_nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

bool all_zero(const KeyBytes& k) { return sodium_is_zero(k.data(), k.size()) == 1; }

void clamp(KeyBytes& k) {
  k[0] &= 248;
  k[31] = (k[31] & 127) | 64;
}

}  // namespace

// ---- NodePublic

Result<NodePublic> NodePublic::parse(std::string_view text) {
  NodePublic k;
  if (!text.starts_with(kNodePublicPrefix) ||
      !parse_key_hex(text.substr(kNodePublicPrefix.size()), k.bytes)) {
    return Error(ErrorKind::kUsage,
                 fmt::format("bad node key {}: want \"nodekey:\" + 64 hex digits",
                             codec::quote_for_error(text)));
  }
  return k;
}

Result<NodePublic> NodePublic::parse_hex(std::string_view hex) {
  NodePublic k;
  if (!parse_key_hex(hex, k.bytes)) {
    return Error(ErrorKind::kUsage,
                 fmt::format("bad node key {}: want 64 hex digits", codec::quote_for_error(hex)));
  }
  return k;
}

Result<NodePublic> NodePublic::parse_any(std::string_view text) {
  if (text.starts_with(kNodePublicPrefix)) return parse(text);
  NodePublic k;
  if (!parse_key_hex(text, k.bytes)) {
    return Error(ErrorKind::kUsage,
                 fmt::format("bad node key {}: want \"nodekey:\" + 64 hex digits, or 64 hex digits",
                             codec::quote_for_error(text)));
  }
  return k;
}

NodePublic NodePublic::from_bytes(const uint8_t* p) {
  NodePublic k;
  std::memcpy(k.bytes.data(), p, kKeyLen);
  return k;
}

std::string NodePublic::to_string() const { return std::string(kNodePublicPrefix) + hex(); }

std::string NodePublic::hex() const { return to_hex(bytes.data(), bytes.size()); }

std::string NodePublic::short_string() const {
  // std base64 of 4 bytes is 8 characters ("xxxxxx=="); Go keeps the first 5.
  codec::ensure_sodium();
  char b64[sodium_base64_ENCODED_LEN(4, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof(b64), bytes.data(), 4, sodium_base64_VARIANT_ORIGINAL);
  return "[" + std::string(b64, 5) + "]";
}

bool NodePublic::is_zero() const { return all_zero(bytes); }

// ---- NodePrivate

NodePrivate NodePrivate::generate() {
  codec::ensure_sodium();
  NodePrivate k;
  randombytes_buf(k.bytes.data(), k.bytes.size());
  clamp(k.bytes);
  return k;
}

Result<NodePrivate> NodePrivate::parse(std::string_view text) {
  NodePrivate k;
  if (!text.starts_with(kNodePrivatePrefix) ||
      !parse_key_hex(text.substr(kNodePrivatePrefix.size()), k.bytes)) {
    // Never echo what may be a secret; its length is enough to spot a truncated paste.
    return Error(ErrorKind::kUsage,
                 fmt::format("bad private key ({} characters): want \"privkey:\" + 64 hex digits",
                             text.size()));
  }
  clamp(k.bytes);
  return k;
}

NodePublic NodePrivate::public_key() const {
  codec::ensure_sodium();
  NodePublic pub;
  // Only fails for a scalar that yields the all-zero point, which a clamped key cannot.
  crypto_scalarmult_base(pub.bytes.data(), bytes.data());
  return pub;
}

std::string NodePrivate::to_string() const {
  return std::string(kNodePrivatePrefix) + to_hex(bytes.data(), bytes.size());
}

bool NodePrivate::is_zero() const { return all_zero(bytes); }

// ---- MeshKey

Result<MeshKey> MeshKey::parse(std::string_view text) {
  std::string_view t = codec::trim_space(text);
  MeshKey k;
  if (!parse_key_hex(t, k.bytes)) {
    // A secret: say what is wrong without printing it.
    return Error(ErrorKind::kUsage,
                 fmt::format("bad mesh key ({} characters): want exactly 64 hex digits", t.size()));
  }
  return k;
}

std::string MeshKey::hex() const { return to_hex(bytes.data(), bytes.size()); }

bool MeshKey::is_zero() const { return all_zero(bytes); }

bool MeshKey::equals(const MeshKey& other) const {
  codec::ensure_sodium();
  return sodium_memcmp(bytes.data(), other.bytes.data(), kKeyLen) == 0;
}

// ---- hex

std::string to_hex(const uint8_t* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '\0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

Result<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    return Error(ErrorKind::kUsage, fmt::format("bad hex: odd length {}", hex.size()));
  }
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = codec::hex_nibble(hex[2 * i]);
    int lo = codec::hex_nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      size_t at = hi < 0 ? 2 * i : 2 * i + 1;
      return Error(ErrorKind::kUsage, fmt::format("bad hex: non-hex character {} at offset {}",
                                                  codec::quote_for_error(hex.substr(at, 1)), at));
    }
    out[i] = static_cast<char>(hi << 4 | lo);
  }
  return out;
}

}  // namespace derp
