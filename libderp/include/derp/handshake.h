// The DERP handshake: NaCl boxes, ClientInfo / ServerInfo JSON and their frames. I/O-free.
// PROTOCOL.md §1.2, §3, §11.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "derp/frame.h"
#include "derp/key.h"
#include "derp/result.h"

namespace derp {

using Nonce = std::array<uint8_t, kNonceLen>;

// nonce[24] || crypto_box_easy(plaintext) — Go's NodePrivate.SealTo. A random nonce unless one
// is given (tests inject the vectors' nonces).
std::vector<uint8_t> seal_to(const NodePrivate& me, const NodePublic& peer,
                             std::span<const uint8_t> plaintext,
                             const std::optional<Nonce>& nonce = std::nullopt);
// Inverse of seal_to (Go's OpenFrom). kProtocol error when short or when the box fails to open.
Result<std::vector<uint8_t>> open_from(const NodePrivate& me, const NodePublic& peer,
                                       std::span<const uint8_t> sealed);

struct ClientInfo {
  MeshKey mesh_key;            // zero = none (then the key is omitted from the JSON)
  int version = kProtocolVersion;
  bool can_ack_pings = false;
  bool is_prober = false;
  std::string app_name;
};

struct ServerInfo {
  int version = kProtocolVersion;
  int64_t token_bucket_bytes_per_second = 0;  // 0 = no client-side limit
  int64_t token_bucket_bytes_burst = 0;
};

// JSON exactly as Go emits it: keys meshKey (when set), version (when ≠ 0), CanAckPings
// (always), IsProber (when true), AppName (when non-empty); no spaces.
std::string client_info_to_json(const ClientInfo& info);
// Go-compatible decoding: keys case-insensitive, unknown keys ignored, `{}` accepted; a meshKey
// that is not exactly 64 hex digits fails.
Result<ClientInfo> client_info_from_json(std::string_view json);
// {"version":2} plus the token-bucket keys when non-zero.
std::string server_info_to_json(const ServerInfo& info);
Result<ServerInfo> server_info_from_json(std::string_view json);

// ClientInfo frame: type 0x02, payload = client public key + seal_to(server, json).
std::vector<uint8_t> encode_client_info_frame(const NodePrivate& client, const NodePublic& server,
                                              const ClientInfo& info,
                                              const std::optional<Nonce>& nonce = std::nullopt);
struct OpenedClientInfo {
  NodePublic client;
  ClientInfo info;
};
// The relay's side: opens a ClientInfo payload (56..256 KiB) with its private key.
Result<OpenedClientInfo> open_client_info(const NodePrivate& server,
                                          std::span<const uint8_t> payload);

// ServerInfo frame: type 0x03, payload = seal_to(client, json).
std::vector<uint8_t> encode_server_info_frame(const NodePrivate& server, const NodePublic& client,
                                              const ServerInfo& info,
                                              const std::optional<Nonce>& nonce = std::nullopt);
// The client's side: opens a ServerInfo payload (24..24+1 MiB).
Result<ServerInfo> open_server_info(const NodePrivate& client, const NodePublic& server,
                                    std::span<const uint8_t> payload);

// The client's check of the first frame when it does not know the server key yet:
// type ServerKey, 40 ≤ length ≤ 1 KiB, magic. Optionally pinned to `expected`.
Result<NodePublic> check_server_key_frame(const FrameReader::Frame& frame,
                                          const std::optional<NodePublic>& expected);

}  // namespace derp
