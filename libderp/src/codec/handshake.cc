// NaCl boxes, ClientInfo / ServerInfo JSON and the handshake frames. PROTOCOL.md §1.2, §3, §11.
#include "derp/handshake.h"

#include <fmt/format.h>
#include <sodium.h>

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "codec/sodium_init.h"
#include "codec/text.h"

namespace derp {
namespace {

using ordered_json = nlohmann::ordered_json;

Error protocol_error(std::string msg) { return Error(ErrorKind::kProtocol, std::move(msg)); }

// Appends `s` as a JSON string the way Go's encoding/json does (so our ClientInfo bytes match
// a Go client's): HTML-safe escapes for < > &, \u2028 and \u2029 escaped, invalid UTF-8
// replaced by U+FFFD, short escapes only for \" \\ \b \f \n \r \t.
void append_go_json_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto unicode_escape = [&](unsigned cp) {
    out += "\\u";
    out += kHex[(cp >> 12) & 15];
    out += kHex[(cp >> 8) & 15];
    out += kHex[(cp >> 4) & 15];
    out += kHex[cp & 15];
  };
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        case '<':
        case '>':
        case '&':
          unicode_escape(c);
          break;
        default:
          if (c < 0x20) {
            unicode_escape(c);
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // Decode one UTF-8 sequence strictly (no overlongs, no surrogates, ≤ U+10FFFF).
    size_t len = 0;
    unsigned cp = 0;
    unsigned min = 0;
    if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07, min = 0x10000;
    }
    bool valid = len > 0 && i + len <= s.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) {
        valid = false;
      } else {
        cp = cp << 6 | (cc & 0x3f);
      }
    }
    valid = valid && cp >= min && cp <= 0x10ffff && !(cp >= 0xd800 && cp <= 0xdfff);
    if (!valid) {
      // Go consumes one byte per invalid sequence start and writes U+FFFD escaped.
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (cp == 0x2028 || cp == 0x2029) {
      unicode_escape(cp);
    } else {
      out.append(s.substr(i, len));
    }
    i += len;
  }
  out += '"';
}

// Parses a JSON object for the handshake decoders. Go's Unmarshal accepts a top-level null
// as "nothing set"; anything else that is not an object is an error.
Result<ordered_json> parse_object(std::string_view json, std::string_view what) {
  ordered_json j;
  try {
    j = ordered_json::parse(json);
  } catch (const nlohmann::json::parse_error& e) {
    return protocol_error(fmt::format("{} is not valid JSON (error at byte {})", what, e.byte));
  } catch (const nlohmann::json::exception&) {
    // The parser reports a number too large for a double (e.g. 1e400) as out_of_range.
    return protocol_error(fmt::format("{} is not valid JSON (a number is out of range)", what));
  }
  if (j.is_null()) return ordered_json::object();
  if (!j.is_object()) return protocol_error(fmt::format("{} JSON is not an object", what));
  return j;
}

// A JSON number that Go would store into an integer field of this type: integral and in range.
template <typename Int>
Result<Int> get_int(const ordered_json& v, std::string_view what, std::string_view key) {
  if (v.is_number_integer() && !v.is_number_unsigned()) {
    const int64_t x = v.get<int64_t>();
    if (x >= std::numeric_limits<Int>::min() && x <= std::numeric_limits<Int>::max()) {
      return static_cast<Int>(x);
    }
  } else if (v.is_number_unsigned()) {
    const uint64_t x = v.get<uint64_t>();
    if (x <= static_cast<uint64_t>(std::numeric_limits<Int>::max())) return static_cast<Int>(x);
  }
  return protocol_error(fmt::format("{} JSON: \"{}\" is not an integer in range", what, key));
}

Result<bool> get_bool(const ordered_json& v, std::string_view what, std::string_view key) {
  if (!v.is_boolean()) {
    return protocol_error(fmt::format("{} JSON: \"{}\" is not a boolean", what, key));
  }
  return v.get<bool>();
}

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

// ---- Boxes

std::vector<uint8_t> seal_to(const NodePrivate& me, const NodePublic& peer,
                             std::span<const uint8_t> plaintext,
                             const std::optional<Nonce>& nonce) {
  codec::ensure_sodium();
  std::vector<uint8_t> out(kNonceLen + crypto_box_MACBYTES + plaintext.size());
  if (nonce) {
    std::memcpy(out.data(), nonce->data(), kNonceLen);
  } else {
    randombytes_buf(out.data(), kNonceLen);
  }
  // libsodium only refuses a low-order peer key (all-zero shared secret). Nothing sealed with
  // such a key is readable anyway; an empty result makes the peer's open fail cleanly.
  if (crypto_box_easy(out.data() + kNonceLen, plaintext.data(), plaintext.size(), out.data(),
                      peer.bytes.data(), me.bytes.data()) != 0) {
    return {};
  }
  return out;
}

Result<std::vector<uint8_t>> open_from(const NodePrivate& me, const NodePublic& peer,
                                       std::span<const uint8_t> sealed) {
  codec::ensure_sodium();
  if (sealed.size() < kNonceLen + crypto_box_MACBYTES) {
    return protocol_error(fmt::format("sealed message of {} bytes is shorter than nonce + MAC ({})",
                                      sealed.size(), kNonceLen + crypto_box_MACBYTES));
  }
  std::vector<uint8_t> plain(sealed.size() - kNonceLen - crypto_box_MACBYTES);
  if (crypto_box_open_easy(plain.data(), sealed.data() + kNonceLen, sealed.size() - kNonceLen,
                           sealed.data(), peer.bytes.data(), me.bytes.data()) != 0) {
    return protocol_error("box did not open (wrong key or corrupted message)");
  }
  return plain;
}

// ---- ClientInfo / ServerInfo JSON

std::string client_info_to_json(const ClientInfo& info) {
  // Go's struct order: meshKey, version, CanAckPings, IsProber, AppName.
  std::string out = "{";
  if (!info.mesh_key.is_zero()) out += fmt::format("\"meshKey\":\"{}\",", info.mesh_key.hex());
  if (info.version != 0) out += fmt::format("\"version\":{},", info.version);
  out += info.can_ack_pings ? "\"CanAckPings\":true" : "\"CanAckPings\":false";
  if (info.is_prober) out += ",\"IsProber\":true";
  if (!info.app_name.empty()) {
    out += ",\"AppName\":";
    append_go_json_string(out, info.app_name);
  }
  out += "}";
  return out;
}

Result<ClientInfo> client_info_from_json(std::string_view json) {
  constexpr std::string_view kWhat = "ClientInfo";
  auto obj = parse_object(json, kWhat);
  if (!obj) return std::move(obj).error();
  ClientInfo info;
  info.version = 0;  // Go's zero value when the key is absent
  // Go matches keys case-insensitively and the last duplicate wins: walk in document order.
  for (const auto& [name, v] : obj->items()) {
    if (codec::iequals_ascii(name, "meshKey")) {
      // null or "" fail in Go too (DERPMesh's text unmarshaling wants exactly 64 hex digits).
      if (!v.is_string()) return protocol_error("ClientInfo JSON: \"meshKey\" is not a string");
      const auto& text = v.get_ref<const std::string&>();
      if (text.size() != 2 * kKeyLen || codec::trim_space(text).size() != text.size()) {
        return protocol_error(fmt::format(
            "ClientInfo JSON: meshKey of {} characters, want 64 hex digits", text.size()));
      }
      auto key = MeshKey::parse(text);
      if (!key) return protocol_error("ClientInfo JSON: meshKey is not 64 hex digits");
      info.mesh_key = *key;
    } else if (v.is_null()) {
      // Go leaves a non-pointer field untouched on null.
    } else if (codec::iequals_ascii(name, "version")) {
      auto x = get_int<int>(v, kWhat, "version");
      if (!x) return std::move(x).error();
      info.version = *x;
    } else if (codec::iequals_ascii(name, "CanAckPings")) {
      auto x = get_bool(v, kWhat, "CanAckPings");
      if (!x) return std::move(x).error();
      info.can_ack_pings = *x;
    } else if (codec::iequals_ascii(name, "IsProber")) {
      auto x = get_bool(v, kWhat, "IsProber");
      if (!x) return std::move(x).error();
      info.is_prober = *x;
    } else if (codec::iequals_ascii(name, "AppName")) {
      if (!v.is_string()) return protocol_error("ClientInfo JSON: \"AppName\" is not a string");
      info.app_name = v.get<std::string>();
    }
    // Unknown keys are ignored, as Go does.
  }
  return info;
}

std::string server_info_to_json(const ServerInfo& info) {
  std::string out = "{";
  auto field = [&](std::string_view key, int64_t value) {
    if (value == 0) return;  // omitempty
    if (out.size() > 1) out += ',';
    out += fmt::format("\"{}\":{}", key, value);
  };
  field("version", info.version);
  field("TokenBucketBytesPerSecond", info.token_bucket_bytes_per_second);
  field("TokenBucketBytesBurst", info.token_bucket_bytes_burst);
  out += "}";
  return out;
}

Result<ServerInfo> server_info_from_json(std::string_view json) {
  constexpr std::string_view kWhat = "ServerInfo";
  auto obj = parse_object(json, kWhat);
  if (!obj) return std::move(obj).error();
  ServerInfo info;
  info.version = 0;
  for (const auto& [name, v] : obj->items()) {
    if (v.is_null()) continue;
    if (codec::iequals_ascii(name, "version")) {
      auto x = get_int<int>(v, kWhat, "version");
      if (!x) return std::move(x).error();
      info.version = *x;
    } else if (codec::iequals_ascii(name, "TokenBucketBytesPerSecond")) {
      auto x = get_int<int64_t>(v, kWhat, "TokenBucketBytesPerSecond");
      if (!x) return std::move(x).error();
      info.token_bucket_bytes_per_second = *x;
    } else if (codec::iequals_ascii(name, "TokenBucketBytesBurst")) {
      auto x = get_int<int64_t>(v, kWhat, "TokenBucketBytesBurst");
      if (!x) return std::move(x).error();
      info.token_bucket_bytes_burst = *x;
    }
  }
  return info;
}

// ---- Frames

std::vector<uint8_t> encode_client_info_frame(const NodePrivate& client, const NodePublic& server,
                                              const ClientInfo& info,
                                              const std::optional<Nonce>& nonce) {
  const std::string json = client_info_to_json(info);
  const std::vector<uint8_t> sealed = seal_to(client, server, bytes_of(json), nonce);
  const NodePublic me = client.public_key();
  std::vector<uint8_t> payload(me.bytes.begin(), me.bytes.end());
  payload.insert(payload.end(), sealed.begin(), sealed.end());
  return frame_bytes(FrameType::kClientInfo, payload);
}

Result<OpenedClientInfo> open_client_info(const NodePrivate& server,
                                          std::span<const uint8_t> payload) {
  constexpr size_t kMin = kKeyLen + kNonceLen;
  if (payload.size() < kMin || payload.size() > kMaxClientInfoLen) {
    return protocol_error(fmt::format("ClientInfo frame of {} bytes, want {}..{}", payload.size(),
                                      kMin, kMaxClientInfoLen));
  }
  OpenedClientInfo out;
  out.client = NodePublic::from_bytes(payload.data());
  auto plain = open_from(server, out.client, payload.subspan(kKeyLen));
  if (!plain) {
    return protocol_error(fmt::format("cannot open ClientInfo box from {}: {}",
                                      out.client.to_string(), plain.error().message));
  }
  auto info = client_info_from_json(
      std::string_view(reinterpret_cast<const char*>(plain->data()), plain->size()));
  if (!info) return info.error().wrap(fmt::format("ClientInfo from {}", out.client.to_string()));
  out.info = std::move(*info);
  return out;
}

std::vector<uint8_t> encode_server_info_frame(const NodePrivate& server, const NodePublic& client,
                                              const ServerInfo& info,
                                              const std::optional<Nonce>& nonce) {
  const std::string json = server_info_to_json(info);
  return frame_bytes(FrameType::kServerInfo, seal_to(server, client, bytes_of(json), nonce));
}

Result<ServerInfo> open_server_info(const NodePrivate& client, const NodePublic& server,
                                    std::span<const uint8_t> payload) {
  if (payload.size() < kNonceLen || payload.size() > kNonceLen + kMaxInfoLen) {
    return protocol_error(fmt::format("ServerInfo frame of {} bytes, want {}..{}", payload.size(),
                                      kNonceLen, kNonceLen + kMaxInfoLen));
  }
  auto plain = open_from(client, server, payload);
  if (!plain) {
    return protocol_error(fmt::format("cannot open ServerInfo box from {}: {}", server.to_string(),
                                      plain.error().message));
  }
  auto info = server_info_from_json(
      std::string_view(reinterpret_cast<const char*>(plain->data()), plain->size()));
  if (!info) return info.error().wrap(fmt::format("ServerInfo from {}", server.to_string()));
  return info;
}

Result<NodePublic> check_server_key_frame(const FrameReader::Frame& frame,
                                          const std::optional<NodePublic>& expected) {
  if (frame.frame_type() != FrameType::kServerKey) {
    return protocol_error(
        fmt::format("expected ServerKey frame, got {}", frame_type_name(frame.type)));
  }
  constexpr size_t kMin = kMagic.size() + kKeyLen;
  constexpr size_t kMax = 1024;  // Go's client reads the first frame with a 1 KiB limit
  if (frame.payload.size() < kMin || frame.payload.size() > kMax) {
    return protocol_error(
        fmt::format("ServerKey frame of {} bytes, want {}..{}", frame.payload.size(), kMin, kMax));
  }
  auto key = decode_server_key(frame.payload);
  if (!key) return key;
  if (expected && *expected != *key) {
    return protocol_error(fmt::format("server key mismatch (expected {}, got {})",
                                      expected->to_string(), key->to_string()));
  }
  return key;
}

}  // namespace derp
