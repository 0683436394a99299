#include <gtest/gtest.h>

#include "common/exit_codes.h"
#include "common/json_output.h"

namespace derp::tools {
namespace {

TEST(ExitCodes, OneCodePerLayer) {
  EXPECT_EQ(exit_code_for(ErrorKind::kUsage), 2);
  EXPECT_EQ(exit_code_for(ErrorKind::kDns), 3);
  EXPECT_EQ(exit_code_for(ErrorKind::kConnect), 4);
  EXPECT_EQ(exit_code_for(ErrorKind::kTls), 5);
  EXPECT_EQ(exit_code_for(ErrorKind::kHttp), 6);
  EXPECT_EQ(exit_code_for(ErrorKind::kProtocol), 7);
  EXPECT_EQ(exit_code_for(ErrorKind::kTimeout), 8);
  EXPECT_EQ(exit_code_for(ErrorKind::kIo), 9);
  EXPECT_EQ(exit_code_for(ErrorKind::kClosed), 9);
  EXPECT_EQ(exit_code_for(ErrorKind::kInternal), 10);
}

TEST(JsonOutput, ErrorObjectNamesTheLayer) {
  auto j = json_error(Error(ErrorKind::kConnect, "connect to 127.0.0.1:1: connection refused"));
  EXPECT_EQ(
      j.dump(),
      R"({"error":{"layer":"connect","message":"connect to 127.0.0.1:1: connection refused"},"ok":false,"schema":1})");
  EXPECT_EQ(json_ok().dump(), R"({"ok":true,"schema":1})");
}

TEST(JsonOutput, PrintableUtf8Detection) {
  EXPECT_TRUE(is_printable_utf8("hello\tworld\n"));
  EXPECT_TRUE(is_printable_utf8("h\xC3\xA9llo \xF0\x9F\x94\x91"));
  EXPECT_FALSE(is_printable_utf8(std::string_view("a\0b", 3)));
  EXPECT_FALSE(is_printable_utf8("\xFF\xFE"));
  EXPECT_FALSE(is_printable_utf8("\xC3"));
  EXPECT_FALSE(is_printable_utf8("\xC0\xAF"));
}

}  // namespace
}  // namespace derp::tools
