// How --mesh-with entries become URLs (derper's startMeshWithHost) and where derp-serve's mesh
// key comes from (--mesh-psk-file, TAILSCALE_DERPER_MESH_KEY, derper's default paths).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/mesh_key_source.h"
#include "server/mesh.h"

namespace derp {
namespace mesh_config {

struct Want {
  std::string entry, url, cert_name;
};

TEST(MeshTarget, EntriesBecomeUrlsAsDerperDialsThem) {
  const std::vector<Want> cases = {
      // Bare entries are https, with or without a port (derper: "https://" + host + "/derp").
      {"127.0.0.1:3341", "https://127.0.0.1:3341/derp", ""},
      {"derp1.example.invalid", "https://derp1.example.invalid/derp", ""},
      {"[::1]:8443", "https://[::1]:8443/derp", ""},
      // host/dialhost: dial the second part on the first part's port, verify the first part.
      {"derp1.example.invalid/127.0.0.2", "https://127.0.0.2/derp", "derp1.example.invalid"},
      {"derp1.example.invalid:8443/127.0.0.2", "https://127.0.0.2:8443/derp",
       "derp1.example.invalid"},
      {"[::1]:8443/127.0.0.1", "https://127.0.0.1:8443/derp", "::1"},
      // URLs are taken as written, plain http:// included (test relays).
      {"http://127.0.0.1:3341/derp", "http://127.0.0.1:3341/derp", ""},
      {"https://127.0.0.1:3341", "https://127.0.0.1:3341", ""},
  };
  for (const Want& w : cases) {
    auto t = server::parse_mesh_target(w.entry);
    ASSERT_TRUE(t) << w.entry << ": " << t.error().message;
    EXPECT_EQ(t->url, w.url) << w.entry;
    EXPECT_EQ(t->cert_name, w.cert_name) << w.entry;
  }
  for (const std::string bad : {"", "a/b/c", "/x", "a b"}) {
    auto t = server::parse_mesh_target(bad);
    EXPECT_FALSE(t) << bad;
  }
}

class MeshKeyChoiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-mesh-key-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string key_file(const std::string& name, char c, mode_t mode = 0600) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << std::string(64, c) << "\n";
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }
  static std::string hex(char c) { return std::string(64, c); }
  std::string dir_;
};

TEST_F(MeshKeyChoiceTest, FlagThenEnvironmentThenTheFirstDefaultPathThatExists) {
  const std::string a = key_file("a.key", 'a');
  const std::string b = key_file("b.key", 'b');
  tools::MeshKeyInputs in;
  in.default_paths = {dir_ + "/missing.key", b};

  // Nothing given: the first default path that exists.
  auto r = tools::choose_mesh_key(in);
  ASSERT_TRUE(r) << r.error().message;
  ASSERT_TRUE(r->key);
  EXPECT_EQ(r->key->hex(), hex('b'));
  EXPECT_NE(r->note.find("mesh key from " + b + " (derper's default path"), std::string::npos)
      << r->note;

  // The environment's key before the default paths.
  in.env_key = hex('c');
  r = tools::choose_mesh_key(in);
  ASSERT_TRUE(r && r->key);
  EXPECT_EQ(r->key->hex(), hex('c'));
  EXPECT_EQ(r->source, "TAILSCALE_DERPER_MESH_KEY");

  // The flag's file before both; the ignored variable is said.
  in.flag_given = true;
  in.flag_file = a;
  r = tools::choose_mesh_key(in);
  ASSERT_TRUE(r && r->key);
  EXPECT_EQ(r->key->hex(), hex('a'));
  EXPECT_EQ(r->note, "TAILSCALE_DERPER_MESH_KEY ignored: --mesh-psk-file is given");

  // --mesh-psk-file "": no file and no search; the variable still counts.
  in.flag_file = "";
  r = tools::choose_mesh_key(in);
  ASSERT_TRUE(r && r->key);
  EXPECT_EQ(r->key->hex(), hex('c'));
  in.env_key.reset();
  r = tools::choose_mesh_key(in);
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->key);
}

TEST_F(MeshKeyChoiceTest, BadInputsNameTheirSourceNeverTheKey) {
  tools::MeshKeyInputs in;
  in.env_key = "abc123";
  auto r = tools::choose_mesh_key(in);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(r.error().message,
            "TAILSCALE_DERPER_MESH_KEY: bad mesh key (6 characters): want exactly 64 hex digits");

  // A default path that exists is read with the private-file rule, as an explicit one.
  in.env_key.reset();
  const std::string open = key_file("open.key", 'a', 0644);
  in.default_paths = {open};
  r = tools::choose_mesh_key(in);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("mesh key file " + open + " has mode 0644"), std::string::npos)
      << r.error().message;
}

TEST(MeshKeyInputs, DefaultPathsAreDerpersOrTheOverride) {
  const char* home = std::getenv("HOME");
  const char* paths = std::getenv(tools::kMeshPathsEnv);
  const std::optional<std::string> saved_home =
      home ? std::optional<std::string>(home) : std::nullopt;
  const std::optional<std::string> saved_paths =
      paths ? std::optional<std::string>(paths) : std::nullopt;

  ::unsetenv(tools::kMeshPathsEnv);
  ::setenv("HOME", "/nowhere/home", 1);
  auto in = tools::mesh_key_inputs_from_environment(false, "");
  EXPECT_EQ(in.default_paths, (std::vector<std::string>{"/home/derp/keys/derp-mesh.key",
                                                        "/nowhere/home/keys/derp-mesh.key"}));
  ::setenv(tools::kMeshPathsEnv, "/x/one.key::/y/two.key", 1);
  in = tools::mesh_key_inputs_from_environment(false, "");
  EXPECT_EQ(in.default_paths, (std::vector<std::string>{"/x/one.key", "/y/two.key"}));
  ::setenv(tools::kMeshPathsEnv, "", 1);
  in = tools::mesh_key_inputs_from_environment(false, "");
  EXPECT_TRUE(in.default_paths.empty());

  if (saved_home)
    ::setenv("HOME", saved_home->c_str(), 1);
  else
    ::unsetenv("HOME");
  if (saved_paths)
    ::setenv(tools::kMeshPathsEnv, saved_paths->c_str(), 1);
  else
    ::unsetenv(tools::kMeshPathsEnv);
}

}  // namespace mesh_config
}  // namespace derp
