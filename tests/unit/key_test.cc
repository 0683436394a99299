// Node keys, mesh keys, hex helpers and key files. PROTOCOL.md §1.1, §1.3, §11.
#include "derp/key.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_set>

namespace derp {
namespace {

struct KnownPair {
  const char* priv;
  const char* pub;
};

// §1.1 (Go's node_test.go), §11's server key, and the vectors' other keys.
constexpr KnownPair kKnownPairs[] = {
    {"privkey:40ab1b58e9076c7a4d9d07291f5edf9d1aa017eb949624ba683317f48a640369",
     "nodekey:50d20b455ecf12bc453f83c2cfdb2a24925d06cf2598dcaa54e91af82ce9f765"},
    {"privkey:0002030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f60",
     "nodekey:07a37cbc142093c8b755dc1b10e86cb426374ad16aa853ed0bdfc0b2b86d1c7c"},
    {"privkey:c83c0891a1ce47a49adf54c16e3038775b316287578d688374a9d1f92c493975",
     "nodekey:a9a90c60c5f5fb163128debc97f0e0794a23e78b2bb8143443a5aefaaa4f212c"},
    {"privkey:60b20bb35c921760f56b5284a9aa15675a6d413033aae99379edcc2edb6fe16e",
     "nodekey:f56c9bb26f875b79e3e9d76e75954953436f1289a5195f5a1a33a50949bc2479"},
};

constexpr const char* kPubA =
    "nodekey:50d20b455ecf12bc453f83c2cfdb2a24925d06cf2598dcaa54e91af82ce9f765";

TEST(Key, PrivateKeysGiveTheKnownPublicKeys) {
  for (const auto& pair : kKnownPairs) {
    auto priv = NodePrivate::parse(pair.priv);
    ASSERT_TRUE(priv.ok()) << priv.error().message;
    EXPECT_EQ(priv->public_key().to_string(), pair.pub) << pair.priv;
  }
}

TEST(Key, PublicKeyTextRoundTrips) {
  auto k = NodePublic::parse(kPubA);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->to_string(), kPubA);
  EXPECT_EQ(k->hex(), std::string(kPubA).substr(8));
  EXPECT_EQ(k->bytes[0], 0x50);
  EXPECT_EQ(k->bytes[31], 0x65);
  auto again = NodePublic::parse(k->to_string());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *k);
}

TEST(Key, PrivateKeyTextRoundTrips) {
  auto k = NodePrivate::parse(kKnownPairs[0].priv);
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->to_string(), kKnownPairs[0].priv);
}

TEST(Key, UpperCaseHexIsAcceptedAndPrintedLowerCase) {
  auto k =
      NodePublic::parse("nodekey:50D20B455ECF12BC453F83C2CFDB2A24925D06CF2598DCAA54E91AF82CE9F765");
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->to_string(), kPubA);
  auto p = NodePrivate::parse(
      "privkey:40AB1B58E9076C7A4D9D07291F5EDF9D1AA017EB949624BA683317F48A640369");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->to_string(), kKnownPairs[0].priv);
}

TEST(Key, PublicKeyRejectsWrongPrefixLengthAndDigits) {
  const std::string hex = std::string(kPubA).substr(8);
  for (const std::string& bad :
       {hex, "NODEKEY:" + hex, "nodekey " + hex, "privkey:" + hex, "nodekey:" + hex.substr(2),
        "nodekey:" + hex + "00", "nodekey:" + hex.substr(1) + "g", std::string("nodekey:12"),
        std::string(""), " nodekey:" + hex}) {
    auto k = NodePublic::parse(bad);
    ASSERT_FALSE(k.ok()) << bad;
    EXPECT_EQ(k.error().kind, ErrorKind::kUsage);
  }
  auto k = NodePublic::parse("nodekey:12");
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.error().message, "bad node key \"nodekey:12\": want \"nodekey:\" + 64 hex digits");
}

TEST(Key, ParseHexAndParseAnyAcceptTheirForms) {
  const std::string hex = std::string(kPubA).substr(8);
  auto a = NodePublic::parse_hex(hex);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->to_string(), kPubA);
  EXPECT_FALSE(NodePublic::parse_hex(kPubA).ok());  // the prefix is not hex
  EXPECT_FALSE(NodePublic::parse_hex(hex.substr(2)).ok());
  auto b = NodePublic::parse_any(hex);
  auto c = NodePublic::parse_any(kPubA);
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*b, *a);
  EXPECT_EQ(*c, *a);
  EXPECT_FALSE(NodePublic::parse_any("nodekey:" + hex.substr(1)).ok());
  EXPECT_FALSE(NodePublic::parse_any("mkey:" + hex).ok());
}

TEST(Key, PrivateKeyErrorDoesNotEchoTheSecret) {
  const std::string secret =
      "privkey:40ab1b58e9076c7a4d9d07291f5edf9d1aa017eb949624ba683317f48a6403";
  auto k = NodePrivate::parse(secret);
  ASSERT_FALSE(k.ok());
  EXPECT_EQ(k.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(k.error().message.find("40ab1b58"), std::string::npos) << k.error().message;
  EXPECT_NE(k.error().message.find("privkey:"), std::string::npos);
}

TEST(Key, ParsedPrivateKeysAreClamped) {
  // All-ones is the scalar most in need of clamping: bits 0-2 and 255 cleared, bit 254 set.
  auto k = NodePrivate::parse("privkey:" + std::string(64, 'f'));
  ASSERT_TRUE(k.ok());
  EXPECT_EQ(k->bytes[0], 0xf8);
  EXPECT_EQ(k->bytes[31], 0x7f);
  auto z = NodePrivate::parse("privkey:" + std::string(64, '0'));
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(z->bytes[0], 0x00);
  EXPECT_EQ(z->bytes[31], 0x40);
}

TEST(Key, GeneratedKeysAreClampedAndDistinct) {
  std::unordered_set<NodePublic> seen;
  for (int i = 0; i < 32; ++i) {
    NodePrivate k = NodePrivate::generate();
    EXPECT_EQ(k.bytes[0] & 7, 0);
    EXPECT_EQ(k.bytes[31] & 0xc0, 0x40);
    EXPECT_FALSE(k.is_zero());
    EXPECT_TRUE(seen.insert(k.public_key()).second);
  }
}

TEST(Key, ShortStringIsFiveBase64CharsOfTheFirstFourBytes) {
  auto k = NodePublic::parse(kPubA);
  ASSERT_TRUE(k.ok());
  // base64(50 d2 0b 45) = "UNILRQ==".
  EXPECT_EQ(k->short_string(), "[UNILR]");
  EXPECT_EQ(NodePublic{}.short_string(), "[AAAAA]");
}

TEST(Key, ZeroKeysAreDetected) {
  EXPECT_TRUE(NodePublic{}.is_zero());
  EXPECT_TRUE(NodePrivate{}.is_zero());
  EXPECT_TRUE(MeshKey{}.is_zero());
  auto k = NodePublic::parse(kPubA);
  ASSERT_TRUE(k.ok());
  EXPECT_FALSE(k->is_zero());
}

TEST(Key, MeshKeyParsesTrimmedHexAndComparesByValue) {
  const std::string hex = "4be335de831a09a73d40ccd9a8a8314763f41a4538baf3b6decd394acde0e0c4";
  auto a = MeshKey::parse(" \t" + hex + "\n");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->hex(), hex);
  auto upper = MeshKey::parse("4BE335DE831A09A73D40CCD9A8A8314763F41A4538BAF3B6DECD394ACDE0E0C4");
  ASSERT_TRUE(upper.ok());
  EXPECT_TRUE(a->equals(*upper));
  auto other = MeshKey::parse(std::string(63, '0') + "1");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(a->equals(*other));
  for (const std::string& bad : {hex.substr(1), hex + "0", hex.substr(2) + "zz", std::string()}) {
    auto k = MeshKey::parse(bad);
    ASSERT_FALSE(k.ok()) << bad;
    EXPECT_EQ(k.error().kind, ErrorKind::kUsage);
  }
}

TEST(Key, HexHelpersRoundTripAndRejectBadInput) {
  const uint8_t bytes[] = {0x00, 0x01, 0xab, 0xff};
  EXPECT_EQ(to_hex(bytes, sizeof(bytes)), "0001abff");
  auto back = from_hex("0001ABff");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, std::string("\x00\x01\xab\xff", 4));
  EXPECT_TRUE(from_hex("").ok());
  auto odd = from_hex("abc");
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.error().kind, ErrorKind::kUsage);
  auto bad = from_hex("ab0x");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("offset 3"), std::string::npos) << bad.error().message;
}

TEST(Key, ErrorKindNamesAreStable) {
  EXPECT_STREQ(error_kind_name(ErrorKind::kUsage), "usage");
  EXPECT_STREQ(error_kind_name(ErrorKind::kDns), "dns");
  EXPECT_STREQ(error_kind_name(ErrorKind::kConnect), "connect");
  EXPECT_STREQ(error_kind_name(ErrorKind::kTls), "tls");
  EXPECT_STREQ(error_kind_name(ErrorKind::kHttp), "http");
  EXPECT_STREQ(error_kind_name(ErrorKind::kProtocol), "protocol");
  EXPECT_STREQ(error_kind_name(ErrorKind::kTimeout), "timeout");
  EXPECT_STREQ(error_kind_name(ErrorKind::kIo), "io");
  EXPECT_STREQ(error_kind_name(ErrorKind::kClosed), "closed");
  EXPECT_STREQ(error_kind_name(ErrorKind::kInternal), "internal");
}

// ---- Key files

class KeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "derp-keyfile-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static void write(const std::string& p, const std::string& text, mode_t mode) {
    {
      std::ofstream out(p, std::ios::binary | std::ios::trunc);
      out << text;
    }
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
  }
  static std::string read(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static mode_t mode_of(const std::string& p) {
    struct stat st {};
    EXPECT_EQ(::stat(p.c_str(), &st), 0);
    return st.st_mode & 07777;
  }

  std::filesystem::path dir_;
};

TEST_F(KeyFile, SaveWritesTabIndentedJsonWithMode0600AndLoadReadsItBack) {
  auto key = NodePrivate::parse(kKnownPairs[0].priv);
  ASSERT_TRUE(key.ok());
  const std::string p = path("derper.key");
  auto saved = save_key_file(p, *key);
  ASSERT_TRUE(saved.ok()) << saved.error().message;
  EXPECT_EQ(mode_of(p), 0600u);
  EXPECT_EQ(read(p), std::string("{\n\t\"PrivateKey\": \"") + kKnownPairs[0].priv + "\"\n}");
  auto loaded = load_key_file(p);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(*loaded, *key);
  // No temporary file is left next to it.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), {}), 1);
}

TEST_F(KeyFile, SaveReplacesAnExistingFileAndTightensItsMode) {
  const std::string p = path("derper.key");
  write(p, "old", 0644);
  NodePrivate key = NodePrivate::generate();
  ASSERT_TRUE(save_key_file(p, key).ok());
  EXPECT_EQ(mode_of(p), 0600u);
  auto loaded = load_key_file(p);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(*loaded, key);
}

TEST_F(KeyFile, GroupReadableFileIsRefused) {
  const std::string p = path("derper.key");
  write(p, std::string("{\"PrivateKey\": \"") + kKnownPairs[0].priv + "\"}", 0640);
  auto loaded = load_key_file(p);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, ErrorKind::kUsage);
  EXPECT_EQ(loaded.error().message,
            "key file " + p + " has mode 0640; it must not be accessible by group or others " +
                "(chmod 600 " + p + ")");
  // load_or_create must not silently replace it either.
  auto again = load_or_create_key_file(p);
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(mode_of(p), 0640u);
}

TEST_F(KeyFile, WorldWritableFileIsRefused) {
  const std::string p = path("derper.key");
  write(p, std::string("{\"PrivateKey\": \"") + kKnownPairs[0].priv + "\"}", 0602);
  auto loaded = load_key_file(p);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().message.find("mode 0602"), std::string::npos);
}

TEST_F(KeyFile, MissingFileIsAClearError) {
  auto loaded = load_key_file(path("nope.key"));
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().kind, ErrorKind::kUsage);
  EXPECT_NE(loaded.error().message.find("nope.key"), std::string::npos);
  EXPECT_NE(loaded.error().message.find("No such file"), std::string::npos)
      << loaded.error().message;
}

TEST_F(KeyFile, BadContentsAreRefusedWithTheReason) {
  struct Case {
    std::string text;
    std::string want;
  };
  const Case cases[] = {
      {"not json", "is not valid JSON"},
      {"{\"PrivateKey\": 1e400}", "is not valid JSON"},
      {"[1,2]", "is not a JSON object"},
      {"{}", "has no \"PrivateKey\""},
      {"{\"PrivateKey\": 5}", "\"PrivateKey\" is not a string"},
      {"{\"PrivateKey\": \"nodekey:00\"}", "bad private key"},
  };
  for (const auto& c : cases) {
    const std::string p = path("bad.key");
    write(p, c.text, 0600);
    auto loaded = load_key_file(p);
    ASSERT_FALSE(loaded.ok()) << c.text;
    EXPECT_EQ(loaded.error().kind, ErrorKind::kUsage);
    EXPECT_NE(loaded.error().message.find(c.want), std::string::npos) << loaded.error().message;
    EXPECT_NE(loaded.error().message.find(p), std::string::npos) << loaded.error().message;
  }
}

TEST_F(KeyFile, FieldNameIsMatchedCaseInsensitivelyAsGoDoes) {
  const std::string p = path("derper.key");
  write(p, std::string("{\"privatekey\":\"") + kKnownPairs[0].priv + "\"}", 0600);
  auto loaded = load_key_file(p);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  EXPECT_EQ(loaded->to_string(), kKnownPairs[0].priv);
}

TEST_F(KeyFile, LoadOrCreateCreatesOnceThenLoads) {
  const std::string p = path("derper.key");
  bool created = false;
  auto first = load_or_create_key_file(p, &created);
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_TRUE(created);
  EXPECT_EQ(mode_of(p), 0600u);
  auto second = load_or_create_key_file(p, &created);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_FALSE(created);
  EXPECT_EQ(*first, *second);
}

TEST_F(KeyFile, LoadOrCreateCreatesMissingDirectoriesPrivate) {
  // derp-serve -c /var/lib/derp/derper.key on a fresh machine: derper creates the directory.
  ::mkdir(path("here").c_str(), 0755);
  const std::string p = path("here/no/such/derper.key");
  bool created = false;
  auto key = load_or_create_key_file(p, &created);
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_TRUE(created);
  EXPECT_EQ(mode_of(path("here/no")), 0700u);
  EXPECT_EQ(mode_of(path("here/no/such")), 0700u);
  EXPECT_EQ(mode_of(path("here")), 0755u);  // an existing directory is left as it is
  EXPECT_EQ(mode_of(p), 0600u);
  auto again = load_or_create_key_file(p, &created);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_FALSE(created);
  EXPECT_EQ(*again, *key);
}

TEST_F(KeyFile, LoadOrCreateRefusesAFileWhereADirectoryShouldBe) {
  write(path("plain"), "x", 0600);
  const std::string p = path("plain/derper.key");
  auto key = load_or_create_key_file(p);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().kind, ErrorKind::kUsage);
  EXPECT_NE(key.error().message.find("Not a directory"), std::string::npos)
      << key.error().message;
}

TEST_F(KeyFile, MeshKeyFileReadableByOthersIsRefused) {
  const std::string hex(64, 'b');
  const std::string p = path("mesh.key");
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    write(p, hex, mode);
    ASSERT_EQ(::chmod(p.c_str(), mode), 0);
    auto k = load_mesh_key_file(p);
    ASSERT_FALSE(k.ok()) << std::oct << mode;
    EXPECT_EQ(k.error().kind, ErrorKind::kUsage);
    EXPECT_NE(k.error().message.find("(chmod 600 " + p + ")"), std::string::npos)
        << k.error().message;
  }
  ASSERT_EQ(::chmod(p.c_str(), 0400), 0);
  EXPECT_TRUE(load_mesh_key_file(p).ok());  // read-only for the owner is fine
  EXPECT_FALSE(load_mesh_key_file(path("")).ok());  // a directory is not a key file
}

TEST_F(KeyFile, MeshKeyFileIsTrimmedHex) {
  const std::string hex = "4be335de831a09a73d40ccd9a8a8314763f41a4538baf3b6decd394acde0e0c4";
  const std::string p = path("mesh.key");
  write(p, hex + "\n", 0600);
  auto k = load_mesh_key_file(p);
  ASSERT_TRUE(k.ok()) << k.error().message;
  EXPECT_EQ(k->hex(), hex);

  write(p, hex.substr(4) + "\n", 0600);
  auto bad = load_mesh_key_file(p);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().kind, ErrorKind::kUsage);
  EXPECT_NE(bad.error().message.find(p), std::string::npos);
  EXPECT_EQ(bad.error().message.find(hex.substr(4)), std::string::npos) << "secret echoed";

  auto missing = load_mesh_key_file(path("none"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().kind, ErrorKind::kUsage);
}

}  // namespace
}  // namespace derp
