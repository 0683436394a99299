// Where derp-serve's mesh key comes from, as derper looks for it: --mesh-psk-file, else
// TAILSCALE_DERPER_MESH_KEY, else derper's default key files. Tool policy (flags, environment,
// paths), so it lives with the tools; the library only ever gets the key.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "derp/key.h"
#include "derp/result.h"

namespace derp::tools {

// The environment variable derper (with -dev) takes the mesh key from, as 64 hex digits.
inline constexpr const char* kMeshKeyEnv = "TAILSCALE_DERPER_MESH_KEY";
// Replaces derper's default mesh key paths (colon-separated), for tests and unusual layouts.
inline constexpr const char* kMeshPathsEnv = "DERP_SERVE_MESH_PSK_PATHS";

struct MeshKeyInputs {
  bool flag_given = false;                 // --mesh-psk-file on the command line, even as ""
  std::string flag_file;                   // its value
  std::optional<std::string> env_key;      // TAILSCALE_DERPER_MESH_KEY, when set
  std::vector<std::string> default_paths;  // searched in order when the flag is not given
};

struct MeshKeyChoice {
  std::optional<MeshKey> key;  // nullopt: no mesh key from anywhere
  std::string source;          // "mesh key file F", "TAILSCALE_DERPER_MESH_KEY", "" for none
  std::string note;            // one line worth logging (a default path used, an input ignored)
};

// Reads the inputs from the process: TAILSCALE_DERPER_MESH_KEY (an empty value counts as unset,
// as derper's os.Getenv), and DERP_SERVE_MESH_PSK_PATHS or derper's two default paths
// (/home/derp/keys/derp-mesh.key, $HOME/keys/derp-mesh.key).
MeshKeyInputs mesh_key_inputs_from_environment(bool flag_given, std::string flag_file);

// Picks the key: the flag's file when non-empty; else the environment's key; else, when the
// flag is not given at all, the first default path that exists (derper's os.Stat), read with
// the same private-file rule. kUsage names the file or the variable, never prints the key.
Result<MeshKeyChoice> choose_mesh_key(const MeshKeyInputs& in);

}  // namespace derp::tools
