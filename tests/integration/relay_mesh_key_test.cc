// derp-serve's mesh key sources as a user meets them (issue 19): --mesh-psk-file, else
// TAILSCALE_DERPER_MESH_KEY, else derper's default key files ($HOME/keys/derp-mesh.key, or the
// DERP_SERVE_MESH_PSK_PATHS list). Each relay runs through /usr/bin/env so the test sets the
// environment exactly; the key in use is proven by derp-watch being admitted with it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "support/process.h"
#include "support/relay_harness.h"

namespace derp::test {
// Named, not anonymous: in a unity build this file shares a translation unit with others.
namespace mesh_key_sources {

namespace fs = std::filesystem;

const std::string kServeBin = std::string(DERP_BIN_DIR) + "/derp-serve";

class DerpServeMeshKey : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-mesh-key-src-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string key_file(const std::string& rel, char c, mode_t mode = 0600) {
    const std::string path = dir_ + "/" + rel;
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << std::string(64, c) << "\n";
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }
  static std::string hex(char c) { return std::string(64, c); }

  // env(1) arguments: HOME is the test directory, the mesh variables unset unless given.
  std::vector<std::string> env_args(const std::vector<std::string>& set) const {
    std::vector<std::string> a = {"-u", "TAILSCALE_DERPER_MESH_KEY", "-u",
                                  "DERP_SERVE_MESH_PSK_PATHS", "HOME=" + dir_ + "/home"};
    a.insert(a.end(), set.begin(), set.end());
    return a;
  }
  std::vector<std::string> serve_args(const std::vector<std::string>& extra) const {
    std::vector<std::string> a = {kServeBin,   "-a", "127.0.0.1:0", "--stun=false",
                                  "--threads", "1",  "-c",          dir_ + "/relay.key"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // Starts derp-serve; returns its http://…/derp URL ("" and a test failure if it did not start).
  std::string start(const std::vector<std::string>& env, const std::vector<std::string>& extra) {
    auto args = env_args(env);
    for (auto& a : serve_args(extra)) args.push_back(a);
    relay_ = std::make_unique<Process>("/usr/bin/env", args);
    auto line = relay_->wait_for_line("listening on http://", kWait, Process::Stream::kStdout);
    EXPECT_TRUE(line) << relay_->err();
    if (!line) return "";
    std::smatch m;
    EXPECT_TRUE(std::regex_search(*line, m, std::regex("http://[0-9.:]+/derp")));
    return m.str();
  }

  // Runs derp-serve to its exit (a refused command line).
  ProcessResult refused(const std::vector<std::string>& env,
                        const std::vector<std::string>& extra) {
    auto args = env_args(env);
    for (auto& a : serve_args(extra)) args.push_back(a);
    Process p("/usr/bin/env", args);
    return p.wait(kWait);
  }

  // derp-watch's exit with this mesh key: 0 when the relay takes it, 7 when it does not.
  static int watch_with(const std::string& url, char c) {
    return run_tool("derp-watch", {url, "--once", "--mesh-key", hex(c)}).exit_code;
  }

  std::string dir_;
  std::unique_ptr<Process> relay_;
};

TEST_F(DerpServeMeshKey, TakesTheKeyFromTailscaleDerperMeshKey) {
  const std::string url =
      start({"TAILSCALE_DERPER_MESH_KEY=" + hex('e'), "DERP_SERVE_MESH_PSK_PATHS="}, {});
  ASSERT_FALSE(url.empty());
  EXPECT_TRUE(relay_->wait_for_line("mesh key from TAILSCALE_DERPER_MESH_KEY", kWait,
                                    Process::Stream::kStderr))
      << relay_->err();
  EXPECT_EQ(watch_with(url, 'e'), 0) << relay_->err();
  EXPECT_EQ(watch_with(url, 'f'), 7);
}

TEST_F(DerpServeMeshKey, MeshPskFileWinsOverTheVariableAndSaysSo) {
  const std::string file = key_file("mesh.key", 'a');
  const std::string url =
      start({"TAILSCALE_DERPER_MESH_KEY=" + hex('e')}, {"--mesh-psk-file", file});
  ASSERT_FALSE(url.empty());
  EXPECT_TRUE(relay_->wait_for_line("TAILSCALE_DERPER_MESH_KEY ignored: --mesh-psk-file is given",
                                    kWait, Process::Stream::kStderr))
      << relay_->err();
  EXPECT_EQ(watch_with(url, 'a'), 0);
  EXPECT_EQ(watch_with(url, 'e'), 7);
}

// derper's defaultMeshPSKFile(): /home/derp/keys/derp-mesh.key, then $HOME/keys/derp-mesh.key.
TEST_F(DerpServeMeshKey, FindsDerpersDefaultKeyFileUnderHome) {
  if (fs::exists("/home/derp/keys/derp-mesh.key")) {
    GTEST_SKIP() << "/home/derp/keys/derp-mesh.key exists on this machine and comes first";
  }
  const std::string file = key_file("home/keys/derp-mesh.key", 'b');
  const std::string url = start({}, {});
  ASSERT_FALSE(url.empty());
  EXPECT_TRUE(relay_->wait_for_line("mesh key from " + file + " (derper's default path", kWait,
                                    Process::Stream::kStderr))
      << relay_->err();
  EXPECT_EQ(watch_with(url, 'b'), 0);
  relay_.reset();
  // --mesh-psk-file "" turns the search off, as in derper: no mesh key, watchers refused.
  const std::string off = start({}, {"--mesh-psk-file", ""});
  ASSERT_FALSE(off.empty());
  EXPECT_EQ(watch_with(off, 'b'), 7);
}

TEST_F(DerpServeMeshKey, SearchPathOverrideTakesTheFirstFileThatExists) {
  const std::string second = key_file("b/derp-mesh.key", 'c');
  const std::string third = key_file("c/derp-mesh.key", 'd');
  const std::string paths = dir_ + "/a/derp-mesh.key:" + second + ":" + third;
  const std::string url = start({"DERP_SERVE_MESH_PSK_PATHS=" + paths}, {});
  ASSERT_FALSE(url.empty());
  EXPECT_EQ(watch_with(url, 'c'), 0);
  EXPECT_EQ(watch_with(url, 'd'), 7);
}

// The old rules hold for every source: a default file that group or others can read is exit 2
// with the chmod hint, a bad variable is exit 2 without its value, and nothing is written.
TEST_F(DerpServeMeshKey, BadSourcesExitTwoBeforeWritingTheKeyFile) {
  const std::string open = key_file("home/keys/derp-mesh.key", 'a', 0644);
  const std::string paths = "DERP_SERVE_MESH_PSK_PATHS=" + open;
  auto r = refused({paths}, {});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("mesh key file " + open +
                       " has mode 0644; it must not be accessible by group or others (chmod 600 " +
                       open + ")"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ + "/relay.key"));

  r = refused({"TAILSCALE_DERPER_MESH_KEY=abc123" + std::string(7, 'f')}, {});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err,
            "derp-serve: TAILSCALE_DERPER_MESH_KEY: bad mesh key (13 characters): want exactly "
            "64 hex digits\n");
  EXPECT_FALSE(fs::exists(dir_ + "/relay.key"));

  r = refused({"DERP_SERVE_MESH_PSK_PATHS="}, {"--mesh-with", "127.0.0.1:1"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--mesh-with needs --mesh-psk-file (or TAILSCALE_DERPER_MESH_KEY"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir_ + "/relay.key"));
}

// A mesh whose key comes from the variable: --mesh-with needs no --mesh-psk-file then.
TEST_F(DerpServeMeshKey, MeshWithTheVariablesKeyLinksUp) {
  const auto ports = free_loopback_ports(2);
  std::vector<std::unique_ptr<Process>> relays;
  std::string both;
  for (uint16_t p : ports) {
    both +=
        (both.empty() ? "" : ",") + std::string("http://127.0.0.1:") + std::to_string(p) + "/derp";
  }
  for (size_t i = 0; i < 2; ++i) {
    auto args = env_args({"TAILSCALE_DERPER_MESH_KEY=" + hex('9')});
    for (const std::string& a :
         {kServeBin, std::string("-a"), "127.0.0.1:" + std::to_string(ports[i]),
          std::string("--stun=false"), std::string("-c"), dir_ + "/r" + std::to_string(i) + ".key",
          std::string("--mesh-with"), both}) {
      args.push_back(a);
    }
    relays.push_back(std::make_unique<Process>("/usr/bin/env", args));
  }
  const std::string peer1 = "http://127.0.0.1:" + std::to_string(ports[1]) + "/derp";
  EXPECT_TRUE(relays[0]->wait_for_line("mesh link to " + peer1 + " up", kWait)) << relays[0]->err();
}

}  // namespace mesh_key_sources
}  // namespace derp::test
