// The incremental frame reader. PROTOCOL.md §2.4 (per-type limits for each side).
#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "derp/frame.h"

namespace derp {
namespace {

// The assembly buffer is first sized for the largest packet frame (ForwardPacket: two keys +
// a full packet), so steady-state traffic needs exactly one allocation per reader. Only the
// rare bigger frames (ClientInfo, a huge ServerInfo on the client side) grow it further.
constexpr size_t kInitialAssembly = 2 * kKeyLen + kMaxPacketSize;

Error limit_error(const FrameHeader& h, std::string_view rule) {
  return Error(ErrorKind::kProtocol,
               fmt::format("{} frame of {} bytes {}", frame_type_name(h.type), h.length, rule));
}

Result<void> check_range(const FrameHeader& h, size_t min, size_t max) {
  if (h.length < min) return limit_error(h, fmt::format("is shorter than the minimum of {}", min));
  if (h.length > max) return limit_error(h, fmt::format("exceeds the limit of {}", max));
  return {};
}

Result<void> check_exact(const FrameHeader& h, size_t want) {
  if (h.length != want) return limit_error(h, fmt::format("has the wrong length (want {})", want));
  return {};
}

}  // namespace

FrameReader::FrameReader(Role role) : role_(role) {}

size_t FrameReader::buffered() const {
  // Consumed but not yet delivered: a partial header, or the header and payload so far of a
  // frame being assembled. A frame being skipped holds nothing.
  if (in_frame_) return skipping_ ? 0 : kFrameHeaderLen + buf_len_;
  return hdr_have_;
}

Result<void> FrameReader::check_header(Role role, const FrameHeader& h, bool* skip) {
  *skip = false;
  if (role == Role::kClient) {
    // Go's client treats anything over 1 MiB as a dead connection, whatever the type.
    if (h.length > kMaxInfoLen) {
      return limit_error(h, fmt::format("exceeds the limit of {}", kMaxInfoLen));
    }
    return {};
  }
  switch (static_cast<FrameType>(h.type)) {
    case FrameType::kSendPacket:
      return check_range(h, kKeyLen, kKeyLen + kMaxPacketSize);
    case FrameType::kForwardPacket:
      return check_range(h, 2 * kKeyLen, 2 * kKeyLen + kMaxPacketSize);
    case FrameType::kNotePreferred:
      return check_exact(h, 1);
    case FrameType::kWatchConns:
      return check_exact(h, 0);
    case FrameType::kClosePeer:
      return check_exact(h, kKeyLen);
    case FrameType::kPing:
      return check_range(h, 8, kMaxPingLen);
    case FrameType::kClientInfo:
      return check_range(h, kKeyLen + kNonceLen, kMaxClientInfoLen);
    default:
      // derper reads and discards everything else (Pong, KeepAlive, unknown...) at any length.
      *skip = true;
      return {};
  }
}

Result<std::optional<FrameReader::Frame>> FrameReader::next(std::span<const uint8_t>& input) {
  if (failed_) {
    return Error(ErrorKind::kInternal, "frame reader used again after a protocol error");
  }
  for (;;) {
    if (!in_frame_) {
      FrameHeader h;
      if (hdr_have_ == 0 && input.size() >= kFrameHeaderLen) {
        h = read_frame_header(input.data());
        bool skip = false;
        if (auto ok = check_header(role_, h, &skip); !ok) {
          failed_ = true;
          return std::move(ok).error();
        }
        const size_t avail = input.size() - kFrameHeaderLen;
        if (avail >= h.length) {
          // The whole frame is here: hand out a view of the caller's bytes (zero copy).
          auto payload = input.subspan(kFrameHeaderLen, h.length);
          input = input.subspan(kFrameHeaderLen + h.length);
          if (skip) {
            ++skipped_;
            continue;
          }
          return std::optional<Frame>(Frame{h.type, payload});
        }
        input = input.subspan(kFrameHeaderLen);
        cur_ = h;
        skipping_ = skip;
      } else {
        // The header itself is split across feeds.
        if (input.empty()) return std::optional<Frame>();  // (memcpy from a null span is UB)
        const size_t n = std::min(kFrameHeaderLen - hdr_have_, input.size());
        std::memcpy(hdr_.data() + hdr_have_, input.data(), n);
        hdr_have_ += n;
        input = input.subspan(n);
        if (hdr_have_ < kFrameHeaderLen) return std::optional<Frame>();
        hdr_have_ = 0;
        h = read_frame_header(hdr_.data());
        bool skip = false;
        if (auto ok = check_header(role_, h, &skip); !ok) {
          failed_ = true;
          return std::move(ok).error();
        }
        cur_ = h;
        skipping_ = skip;
      }
      in_frame_ = true;
      remaining_ = cur_.length;
      buf_len_ = 0;
      if (!skipping_ && buf_.size() < cur_.length) {
        buf_.resize(std::max<size_t>(cur_.length, kInitialAssembly));
      }
    }

    // Inside a frame: take what is available of its payload.
    const size_t n = std::min(remaining_, input.size());
    if (!skipping_ && n > 0) std::memcpy(buf_.data() + buf_len_, input.data(), n);
    if (!skipping_) buf_len_ += n;
    remaining_ -= n;
    input = input.subspan(n);
    if (remaining_ > 0) return std::optional<Frame>();
    in_frame_ = false;
    if (skipping_) {
      skipping_ = false;
      ++skipped_;
      continue;
    }
    const size_t len = buf_len_;
    buf_len_ = 0;
    return std::optional<Frame>(Frame{cur_.type, std::span<const uint8_t>(buf_.data(), len)});
  }
}

}  // namespace derp
