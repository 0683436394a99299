// derp-serve run as a user runs it: a child process on 127.0.0.1, its stdout line, exit codes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "derp/key.h"
#include "support/process.h"
#include "support/relay_harness.h"

namespace derp::test {
namespace {

namespace fs = std::filesystem;

const std::string kServe = std::string(DERP_BIN_DIR) + "/derp-serve";

class DerpServe : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/derp-serve-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(DerpServe, PrintsItsAddressAnswersProbesAndExitsZeroOnSigterm) {
  auto child =
      Child::spawn({kServe, "-a", "127.0.0.1:0", "--stun-port", "0", "--threads", "1"}, dir_);
  ASSERT_TRUE(child);
  auto line = child->read_stdout_line();
  ASSERT_TRUE(line.has_value()) << child->stderr_text();
  std::smatch m;
  ASSERT_TRUE(std::regex_match(*line, m,
                               std::regex("derp-serve: listening on http://127\\.0\\.0\\.1:"
                                          "([0-9]+)/derp key nodekey:[0-9a-f]{64} stun "
                                          "127\\.0\\.0\\.1:[0-9]+")))
      << *line;
  const auto port = static_cast<uint16_t>(std::stoi(m[1].str()));
  EXPECT_TRUE(fs::exists(dir_ + "/derper.key"));  // default key file, created
  RawConn raw(port);
  ASSERT_TRUE(raw.write("GET /derp/probe HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto res = raw.read_http_response();
  ASSERT_TRUE(res.has_value());
  EXPECT_EQ(res->rfind("HTTP/1.1 200 OK\r\n", 0), 0u);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait(), 0) << child->stderr_text();
}

TEST_F(DerpServe, BadFlagExitsTwoWithOneLine) {
  auto child = Child::spawn({kServe, "--no-such-flag"}, dir_);
  ASSERT_TRUE(child);
  EXPECT_EQ(child->wait(), 2);
  const std::string err = child->stderr_text();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_EQ(err.rfind("derp-serve: ", 0), 0u) << err;
}

TEST_F(DerpServe, PortInUseExitsFour) {
  auto first = Child::spawn({kServe, "-a", "127.0.0.1:0", "--stun-port", "0"}, dir_);
  ASSERT_TRUE(first);
  auto line = first->read_stdout_line();
  ASSERT_TRUE(line.has_value());
  const std::string addr =
      line->substr(line->find("http://") + 7, line->find("/derp") - line->find("http://") - 7);
  auto second = Child::spawn({kServe, "-a", addr, "--stun-port", "0"}, dir_);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->wait(), 4);
  EXPECT_EQ(second->stderr_text(), "derp-serve: listen on " + addr + ": address in use\n");
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait(), 0);
}

TEST_F(DerpServe, GroupReadableKeyFileExitsTwo) {
  const std::string key = dir_ + "/derper.key";
  ASSERT_TRUE(save_key_file(key, NodePrivate::generate()).ok());
  ASSERT_EQ(::chmod(key.c_str(), 0640), 0);
  auto child = Child::spawn({kServe, "-a", "127.0.0.1:0", "--stun-port", "0", "-c", key}, dir_);
  ASSERT_TRUE(child);
  EXPECT_EQ(child->wait(), 2);
  EXPECT_NE(child->stderr_text().find(key), std::string::npos) << child->stderr_text();
}

TEST_F(DerpServe, CreatesTheKeyFilesDirectoryPrivate) {
  // The README's `-c /var/lib/derp/derper.key` on a fresh machine: derper creates the directory.
  const std::string key = dir_ + "/state/derp/derper.key";
  auto child = Child::spawn({kServe, "-a", "127.0.0.1:0", "--stun-port", "0", "-c", key}, dir_);
  ASSERT_TRUE(child);
  auto line = child->read_stdout_line();
  ASSERT_TRUE(line.has_value()) << child->stderr_text();
  struct stat st {};
  ASSERT_EQ(::stat((dir_ + "/state/derp").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  child->signal(SIGTERM);
  EXPECT_EQ(child->wait(), 0) << child->stderr_text();
  EXPECT_NE(child->stderr_text().find("created key file " + key), std::string::npos)
      << child->stderr_text();
}

TEST_F(DerpServe, HttpPortThatCannotBeBoundSaysHowToTurnItOff) {
  // derper's --http-port default is 80, the first failure of a TLS relay run by a user (there:
  // permission denied; here, as root in CI, a port in use stands in for it).
  auto first = Child::spawn({kServe, "-a", "127.0.0.1:0", "--stun-port", "0"}, dir_);
  ASSERT_TRUE(first);
  auto line = first->read_stdout_line();
  ASSERT_TRUE(line.has_value()) << first->stderr_text();
  const auto colon = line->find("127.0.0.1:") + 10;
  const std::string port = line->substr(colon, line->find('/', colon) - colon);
  auto tls = Child::spawn(
      {kServe, "-a", "127.0.0.1:0", "--stun-port", "0", "--certmode", "manual", "--certdir", dir_,
       "--hostname", "127.0.0.1", "--http-port", port, "-c", dir_ + "/tls.key"},
      dir_);
  ASSERT_TRUE(tls);
  EXPECT_EQ(tls->wait(), 4);
  const std::string err = tls->stderr_text();
  // Progress notes (key file, certificate) come first; the failure is the one last line.
  const std::string last = err.substr(err.rfind('\n', err.size() - 2) + 1);
  EXPECT_EQ(last.rfind("derp-serve: listen (http port) on 127.0.0.1:" + port, 0), 0u) << err;
  EXPECT_NE(err.find("(hint: --http-port -1 turns the plain-HTTP listener off"), std::string::npos)
      << err;
  first->signal(SIGTERM);
  EXPECT_EQ(first->wait(), 0);
}

// A refused command line writes nothing: the key file does not appear.
TEST_F(DerpServe, RefusedFlagsExitTwoBeforeWritingTheKeyFile) {
  const std::string key = dir_ + "/derper.key";
  const std::string mesh = dir_ + "/mesh.key";
  {
    std::ofstream f(mesh);
    f << std::string(64, 'a') << "\n";
  }
  ASSERT_EQ(::chmod(mesh.c_str(), 0644), 0);
  struct Case {
    std::vector<std::string> args;
    std::string want;
  };
  const std::vector<Case> cases = {
      {{"--mesh-with", "127.0.0.1:1"}, "--mesh-with needs --mesh-psk-file"},
      {{"--verify-client-url", "ftp://x"},
       "--verify-client-url \"ftp://x\": want an http:// or https:// URL"},
      {{"--verify-client-url", "127.0.0.1:1/admit"}, "want an http:// or https:// URL"},
      {{"--debug-allow-from", "127.0.0.0/8,localhost"},
       "--debug-allow-from \"localhost\": not an IP address or prefix"},
      {{"--mesh-psk-file", mesh},
       "mesh key file " + mesh +
           " has mode 0644; it must not be accessible by group or others "
           "(chmod 600 " +
           mesh + ")"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {kServe, "-a", "127.0.0.1:0", "--stun-port", "0", "-c", key};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto child = Child::spawn(argv, dir_);
    ASSERT_TRUE(child);
    EXPECT_EQ(child->wait(), 2) << c.want;
    const std::string err = child->stderr_text();
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_NE(err.find(c.want), std::string::npos) << err;
    EXPECT_EQ(err.find(mesh + ": "), std::string::npos) << "the path is said once: " << err;
    EXPECT_FALSE(fs::exists(key)) << c.want;
  }
  // derp-watch applies the same rule to the same file.
  auto watch = Child::spawn({std::string(DERP_BIN_DIR) + "/derp-watch", "http://127.0.0.1:1",
                             "--mesh-psk-file", mesh, "--once"},
                            dir_);
  ASSERT_TRUE(watch);
  EXPECT_EQ(watch->wait(), 2);
  EXPECT_NE(watch->stderr_text().find("has mode 0644"), std::string::npos) << watch->stderr_text();
  EXPECT_EQ(watch->stderr_text().find(mesh + ": "), std::string::npos) << watch->stderr_text();
  // With mode 0600 the same file is taken.
  ASSERT_EQ(::chmod(mesh.c_str(), 0600), 0);
  auto ok = Child::spawn(
      {kServe, "-a", "127.0.0.1:0", "--stun-port", "0", "-c", key, "--mesh-psk-file", mesh}, dir_);
  ASSERT_TRUE(ok);
  ASSERT_TRUE(ok->read_stdout_line().has_value()) << ok->stderr_text();
  ok->signal(SIGTERM);
  EXPECT_EQ(ok->wait(), 0) << ok->stderr_text();
}

// A full fd table (EMFILE) pauses accepting with a back-off instead of a hot retry loop: one
// log line for the spell and one when it ends, connected clients served meanwhile, and the
// connections that waited in the backlog accepted once fds are free.
TEST_F(DerpServe, FullFdTableBacksOffLogsOnceAndRecovers) {
  Process relay("/bin/sh",
                {"-c", "ulimit -n 32 && exec " + kServe +
                           " -a 127.0.0.1:0 --stun=false --threads 1 -c " + dir_ + "/k"});
  const auto line = relay.wait_for_line("listening on http", kWait, Process::Stream::kStdout);
  ASSERT_TRUE(line) << relay.err();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(*line, m, std::regex(":([0-9]+)/derp")));
  const auto port = static_cast<uint16_t>(std::stoi(m[1].str()));
  const std::string probe = "GET /derp/probe HTTP/1.1\r\nHost: x\r\n\r\n";
  auto served = [&](RawConn& c) {
    if (!c.write(probe)) return false;
    const auto res = c.read_http_response();
    return res && res->rfind("HTTP/1.1 200", 0) == 0;
  };
  RawConn early(port);
  ASSERT_TRUE(served(early));

  std::vector<std::unique_ptr<RawConn>> flood;
  for (int i = 0; i < 60; ++i) flood.push_back(std::make_unique<RawConn>(port));
  ASSERT_TRUE(relay.wait_for_line("Too many open files", kWait, Process::Stream::kStderr))
      << relay.err();
  EXPECT_TRUE(served(early)) << "a connected client is served while accepting is paused";

  flood.clear();  // the relay sees EOF on the accepted ones and frees their fds
  ASSERT_TRUE(relay.wait_for_line("again after", kWait, Process::Stream::kStderr)) << relay.err();
  RawConn late(port);
  EXPECT_TRUE(served(late));
  const std::string err = relay.err();
  const std::regex spell("accept on [^\n]*Too many open files");
  EXPECT_EQ(
      std::distance(std::sregex_iterator(err.begin(), err.end(), spell), std::sregex_iterator()), 1)
      << err;
  relay.signal(SIGTERM);
  EXPECT_EQ(relay.wait(kWait).exit_code, 0) << relay.err();
}

}  // namespace
}  // namespace derp::test
