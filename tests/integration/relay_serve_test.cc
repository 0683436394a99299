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

}  // namespace
}  // namespace derp::test
