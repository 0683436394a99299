#include "support/vectors.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace derp::test {
namespace {

int nibble(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<uint8_t> stream_from(const nlohmann::json& conn, const char* raw_key,
                                 const char* offset_key) {
  std::vector<uint8_t> raw = unhex(conn.at(raw_key).get<std::string>());
  size_t offset = conn.at(offset_key).get<size_t>();
  if (offset > raw.size()) {
    throw std::runtime_error(std::string(offset_key) + " is past the end of " + raw_key);
  }
  return {raw.begin() + static_cast<ptrdiff_t>(offset), raw.end()};
}

}  // namespace

nlohmann::json load_vector(std::string_view name) {
  std::string file(name);
  if (!file.ends_with(".json")) file += ".json";
  std::string path = std::string(DERP_VECTORS_DIR) + "/" + file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open vector file " + path);
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("vector file " + path + " is not valid JSON: " + e.what());
  }
}

std::vector<std::string> vector_names() {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(DERP_VECTORS_DIR)) {
    if (entry.path().extension() == ".json") names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::vector<uint8_t> unhex(std::string_view hex) {
  if (hex.size() % 2 != 0) {
    throw std::runtime_error("unhex: odd length " + std::to_string(hex.size()));
  }
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      throw std::runtime_error("unhex: non-hex digit at offset " + std::to_string(2 * i));
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

std::string hexs(std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t b : bytes) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

NodePrivate private_key(const nlohmann::json& vector, std::string_view name) {
  const std::string text = vector.at("keys").at(std::string(name)).at("private").get<std::string>();
  auto key = NodePrivate::parse(text);
  if (!key)
    throw std::runtime_error("vector key " + std::string(name) + ": " + key.error().message);
  return *key;
}

NodePublic public_key(const nlohmann::json& vector, std::string_view name) {
  const std::string text = vector.at("keys").at(std::string(name)).at("public").get<std::string>();
  auto key = NodePublic::parse(text);
  if (!key)
    throw std::runtime_error("vector key " + std::string(name) + ": " + key.error().message);
  return *key;
}

bool is_derp_connection(const nlohmann::json& conn) {
  return conn.contains("c2s_derp_offset") && conn.contains("s2c_derp_offset");
}

std::vector<uint8_t> c2s_raw(const nlohmann::json& conn) {
  return unhex(conn.at("c2s_raw_hex").get<std::string>());
}

std::vector<uint8_t> s2c_raw(const nlohmann::json& conn) {
  return unhex(conn.at("s2c_raw_hex").get<std::string>());
}

std::vector<uint8_t> c2s_frames_bytes(const nlohmann::json& conn) {
  return stream_from(conn, "c2s_raw_hex", "c2s_derp_offset");
}

std::vector<uint8_t> s2c_frames_bytes(const nlohmann::json& conn) {
  return stream_from(conn, "s2c_raw_hex", "s2c_derp_offset");
}

std::vector<uint8_t> frame_payload(const nlohmann::json& frame) {
  return unhex(frame.at("payload_hex").get<std::string>());
}

}  // namespace derp::test
