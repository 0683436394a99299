// Node keys (Curve25519), mesh keys, their text forms and derper's key file. PROTOCOL.md §1.
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "derp/result.h"

namespace derp {

inline constexpr size_t kKeyLen = 32;
using KeyBytes = std::array<uint8_t, kKeyLen>;

// A node public key: how DERP addresses a client (and the relay's own identity).
struct NodePublic {
  KeyBytes bytes{};

  // Parses "nodekey:<64 hex>" (hex digits of either case). The prefix is mandatory.
  static Result<NodePublic> parse(std::string_view text);
  // Parses exactly 64 hex digits without prefix (Derp-Public-Key header, meta-cert CN).
  static Result<NodePublic> parse_hex(std::string_view hex);
  // Accepts either of the two forms above.
  static Result<NodePublic> parse_any(std::string_view text);
  static NodePublic from_bytes(const uint8_t* p);

  std::string to_string() const;   // "nodekey:<64 lower-case hex>"
  std::string hex() const;         // 64 lower-case hex, no prefix
  std::string short_string() const;  // "[abcde]": first 5 chars of base64 of 4 bytes (logs)
  bool is_zero() const;

  friend bool operator==(const NodePublic&, const NodePublic&) = default;
  friend auto operator<=>(const NodePublic&, const NodePublic&) = default;
};

// A node private key, always stored clamped.
struct NodePrivate {
  KeyBytes bytes{};

  // A fresh random, clamped key (libsodium's CSPRNG).
  static NodePrivate generate();
  // Parses "privkey:<64 hex>"; the value is clamped as Go does on load.
  static Result<NodePrivate> parse(std::string_view text);

  NodePublic public_key() const;  // X25519(priv, basepoint)
  std::string to_string() const;  // "privkey:<64 lower-case hex>"; never log it
  bool is_zero() const;

  friend bool operator==(const NodePrivate&, const NodePrivate&) = default;
};

// The 32-byte mesh pre-shared key. All-zero means "no mesh key". Compared in constant time.
struct MeshKey {
  KeyBytes bytes{};

  // Exactly 64 hex digits, surrounding white space trimmed.
  static Result<MeshKey> parse(std::string_view text);
  std::string hex() const;
  bool is_zero() const;
  bool equals(const MeshKey& other) const;  // constant time
};

// derper's key file: {"PrivateKey": "privkey:<hex>"}.
// Fails with kUsage when the file is missing, unparsable, or readable by group/others.
Result<NodePrivate> load_key_file(const std::string& path);
// Writes the file tab-indented as derper does, mode 0600 (replacing any existing file).
Result<void> save_key_file(const std::string& path, const NodePrivate& key);
// Loads the file, or creates it with a fresh key when it does not exist; *created tells which.
// Missing parent directories are created first, mode 0700 (derper creates them too).
Result<NodePrivate> load_or_create_key_file(const std::string& path, bool* created = nullptr);
// Reads a mesh PSK file (64 hex, white space trimmed). Refused (kUsage) like a key file when it
// is not a regular file or group/others may access it.
Result<MeshKey> load_mesh_key_file(const std::string& path);

// Lower-case hex of any bytes; and its inverse (either case; fails on odd length / non-hex).
std::string to_hex(const uint8_t* p, size_t n);
Result<std::string> from_hex(std::string_view hex);

}  // namespace derp

template <>
struct std::hash<derp::NodePublic> {
  size_t operator()(const derp::NodePublic& k) const noexcept {
    // Keys are uniformly random: their first bytes are already a good hash.
    size_t h;
    static_assert(sizeof(h) <= derp::kKeyLen);
    __builtin_memcpy(&h, k.bytes.data(), sizeof(h));
    return h;
  }
};
