#include "common/mesh_key_source.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdlib>

namespace derp::tools {

MeshKeyInputs mesh_key_inputs_from_environment(bool flag_given, std::string flag_file) {
  MeshKeyInputs in;
  in.flag_given = flag_given;
  in.flag_file = std::move(flag_file);
  if (const char* v = std::getenv(kMeshKeyEnv); v != nullptr && *v != '\0') in.env_key = v;
  if (const char* paths = std::getenv(kMeshPathsEnv); paths != nullptr) {
    std::string_view rest = paths;
    while (!rest.empty()) {
      const auto colon = rest.find(':');
      std::string_view one = rest.substr(0, colon);
      if (!one.empty()) in.default_paths.emplace_back(one);
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  } else {
    // derper's defaultMeshPSKFile(); with HOME unset Go's filepath.Join makes the second one
    // relative (keys/derp-mesh.key in the working directory), and so does this.
    const char* home = std::getenv("HOME");
    const std::string h = home != nullptr ? home : "";
    in.default_paths = {"/home/derp/keys/derp-mesh.key",
                        h.empty() ? "keys/derp-mesh.key" : h + "/keys/derp-mesh.key"};
  }
  return in;
}

Result<MeshKeyChoice> choose_mesh_key(const MeshKeyInputs& in) {
  MeshKeyChoice out;
  if (in.flag_given && !in.flag_file.empty()) {
    auto key = load_mesh_key_file(in.flag_file);  // its errors name the file
    if (!key) return std::move(key).error();
    out.key = *key;
    out.source = "mesh key file " + in.flag_file;
    if (in.env_key) out.note = fmt::format("{} ignored: --mesh-psk-file is given", kMeshKeyEnv);
    return out;
  }
  if (in.env_key) {
    auto key = MeshKey::parse(*in.env_key);  // its error never prints the value
    if (!key) return key.error().wrap(kMeshKeyEnv);
    out.key = *key;
    out.source = kMeshKeyEnv;
    out.note = fmt::format("mesh key from {}", kMeshKeyEnv);
    return out;
  }
  if (in.flag_given) return out;  // --mesh-psk-file "": no key, and no search (as derper)
  for (const auto& path : in.default_paths) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    auto key = load_mesh_key_file(path);
    if (!key) return std::move(key).error();
    out.key = *key;
    out.source = "mesh key file " + path;
    out.note = fmt::format(
        "mesh key from {} (derper's default path; --mesh-psk-file \"\" skips it)", path);
    return out;
  }
  return out;
}

}  // namespace derp::tools
