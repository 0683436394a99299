// The man pages and shell completions every tool generates from its flags (--help-man,
// --completion bash|zsh): man renders each page without a warning, the page lists exactly the
// flags --help lists, the build wrote the same page, and bash/zsh accept the completions.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "support/process.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

const std::vector<std::string> kTools = {
    "derp-serve", "derp-connect", "derp-send",    "derp-recv",   "derp-ping",
    "derp-watch", "derp-probe",   "derp-captive", "derp-keygen", "derp-bench"};

// The program's path on PATH, or "" (Process execs a path, not a name).
std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::string candidate = dir + "/" + name;
    if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

ProcessResult run_program(const std::string& binary, const std::vector<std::string>& args,
                          std::string stdin_data = "") {
  Process p(binary, args, std::move(stdin_data));
  return p.wait(30s);
}

std::string generated(const std::string& tool, const std::vector<std::string>& args) {
  auto r = run_tool(tool, args);
  EXPECT_EQ(r.exit_code, 0) << tool << " " << args.front() << ": " << r.err;
  EXPECT_EQ(r.err, "") << tool;
  return r.out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The flags (-x, --name) in the name column of an option line ("  -c,--count N  Number ...").
void add_flags(const std::string& column, std::set<std::string>& out) {
  static const std::regex flag("(^|[ ,])(--?[A-Za-z][A-Za-z0-9-]*)");
  for (auto it = std::sregex_iterator(column.begin(), column.end(), flag);
       it != std::sregex_iterator(); ++it) {
    out.insert((*it)[2]);
  }
}

// What --help lists: the first word of every option line.
std::set<std::string> help_flags(const std::string& help) {
  std::set<std::string> flags;
  std::istringstream in(help);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("  -", 0) != 0) continue;
    add_flags(line.substr(2, line.find(' ', 2) - 2), flags);
  }
  return flags;
}

// The subcommands --help lists ("Subcommands:" then "  lint   ...").
std::vector<std::string> help_subcommands(const std::string& help) {
  std::vector<std::string> subs;
  std::istringstream in(help);
  std::string line;
  bool in_section = false;
  while (std::getline(in, line)) {
    if (line == "Subcommands:") {
      in_section = true;
    } else if (in_section && line.rfind("  ", 0) == 0) {
      std::istringstream words(line);
      std::string name;
      words >> name;
      subs.push_back(name);
    } else if (in_section) {
      in_section = false;
    }
  }
  return subs;
}

// What the page's OPTIONS section lists: the flags in each .TP item's tag line.
std::set<std::string> man_flags(const std::string& page) {
  std::set<std::string> flags;
  std::istringstream in(page);
  std::string line;
  bool in_options = false, tag_next = false;
  while (std::getline(in, line)) {
    if (line.rfind(".SH", 0) == 0) {
      in_options = line == ".SH OPTIONS";
      continue;
    }
    if (!in_options) continue;
    if (line == ".TP") {
      tag_next = true;
      continue;
    }
    if (!tag_next) continue;
    tag_next = false;
    line = std::regex_replace(line, std::regex(R"(\\f[BIRP])"), "");
    line = std::regex_replace(line, std::regex(R"(\\-)"), "-");
    add_flags(line, flags);
  }
  return flags;
}

std::string missing(const std::set<std::string>& from, const std::set<std::string>& in) {
  std::string s;
  for (const auto& f : from) {
    if (!in.count(f)) s += " " + f;
  }
  return s;
}

TEST(ToolsManual, EveryPageRendersWithoutWarnings) {
  const std::string man = find_program("man");
  if (man.empty()) GTEST_SKIP() << "man is not installed (scripts/install-deps.sh installs man-db)";
  for (const auto& tool : kTools) {
    const std::string page = generated(tool, {"--help-man"});
    ASSERT_FALSE(page.empty()) << tool;
    auto r = run_program("/usr/bin/env",
                         {"MANWIDTH=80", man, "--warnings", "-E", "UTF-8", "-l", "-"}, page);
    EXPECT_EQ(r.exit_code, 0) << tool << ": " << r.err;
    EXPECT_EQ(r.err, "") << tool << ": man warned";
    for (const char* section :
         {"NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"}) {
      EXPECT_NE(r.out.find(std::string("\n") + section + "\n"), std::string::npos)
          << tool << " has no " << section << ":\n"
          << r.out;
    }
    // The shared exit-code table, with the layers --json names (words as justified: spaced).
    const std::string text = std::regex_replace(r.out, std::regex(" +"), " ");
    EXPECT_NE(text.find("(connect) TCP connect failed"), std::string::npos) << tool << text;
    EXPECT_NE(text.find("(io, closed)"), std::string::npos) << tool;
  }
}

TEST(ToolsManual, PageListsExactlyTheFlagsOfHelp) {
  for (const auto& tool : kTools) {
    const std::string help = generated(tool, {"--help"});
    std::set<std::string> in_help = help_flags(help);
    for (const auto& sub : help_subcommands(help)) {
      const auto sub_flags = help_flags(generated(tool, {sub, "--help"}));
      in_help.insert(sub_flags.begin(), sub_flags.end());
    }
    const std::string page = generated(tool, {"--help-man"});
    const std::set<std::string> in_page = man_flags(page);
    EXPECT_GT(in_help.size(), 3u) << tool << ": --help not parsed:\n" << help;
    EXPECT_EQ(missing(in_help, in_page), "") << tool << ": in --help but not in the man page";
    EXPECT_EQ(missing(in_page, in_help), "") << tool << ": in the man page but not in --help";
    EXPECT_EQ(in_page.count("--help-man") + in_page.count("--completion"), 0u) << tool;
    // The build's copy (man/man1) is what the tool prints.
    EXPECT_EQ(read_file(std::string(DERP_BUILD_DIR) + "/man/man1/" + tool + ".1"), page) << tool;
  }
}

TEST(ToolsManual, ServePageSaysDerperSpellingsWork) {
  const std::string page = generated("derp-serve", {"--help-man"});
  EXPECT_NE(page.find("\\fB\\-\\-stun\\-port\\fR"), std::string::npos);
  EXPECT_NE(page.find("one dash (\\-stun\\-port 0"), std::string::npos) << page;
  // The refused derper flags come from derp-serve's own table.
  EXPECT_NE(page.find("\\-verify\\-clients (no tailscaled integration"), std::string::npos);
}

TEST(ToolsManual, UnknownCompletionShellIsUsageError) {
  auto r = run_tool("derp-ping", {"--completion", "fish"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.err.find("fish"), std::string::npos) << r.err;
}

class BashCompletion : public ::testing::Test {
 protected:
  void SetUp() override {
    bash_ = find_program("bash");
    if (bash_.empty()) GTEST_SKIP() << "bash is not installed";
  }
  // COMPREPLY after the tool's completion function ran on `words` (the last one is completed).
  std::vector<std::string> complete(const std::string& tool,
                                    const std::vector<std::string>& words) {
    const std::string file = std::string(DERP_BUILD_DIR) + "/completions/bash/" + tool;
    std::string fn = "_" + tool;
    for (auto& c : fn) {
      if (c == '-') c = '_';
    }
    std::string array = tool;
    for (const auto& w : words) array += " '" + w + "'";
    const std::string script = "source '" + file + "' || exit 3\nCOMP_WORDS=(" + array +
                               ")\nCOMP_CWORD=" + std::to_string(words.size()) + "\n" + fn +
                               "\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n";
    auto r = run_program(bash_, {"-c", script});
    EXPECT_EQ(r.exit_code, 0) << script << r.err;
    EXPECT_EQ(r.err, "") << script;
    std::vector<std::string> out;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty()) out.push_back(line);
    }
    return out;
  }
  std::string bash_;
};

TEST_F(BashCompletion, CompletesAFlagOfEveryTool) {
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"derp-serve", "--stun-p", "--stun-port"}, {"derp-connect", "--inter", "--interval"},
      {"derp-send", "--dat", "--data"},          {"derp-recv", "--ech", "--echo"},
      {"derp-ping", "--cou", "--count"},         {"derp-watch", "--check-m", "--check-mesh"},
      {"derp-probe", "--expl", "--explain"},     {"derp-captive", "--po", "--port"},
      {"derp-keygen", "--for", "--force"},       {"derp-bench", "--connect-s", "--connect-storm"},
  };
  for (const auto& [tool, prefix, want] : cases) {
    EXPECT_EQ(complete(tool, {prefix}), std::vector<std::string>{want}) << tool << " " << prefix;
  }
}

TEST_F(BashCompletion, CompletesSubcommandAndItsFlags) {
  EXPECT_EQ(complete("derp-probe", {"li"}), std::vector<std::string>{"lint"});
  EXPECT_EQ(complete("derp-probe", {"lint", "--act"}), std::vector<std::string>{"--active"});
  // Outside lint, --active is not offered.
  EXPECT_EQ(complete("derp-probe", {"--act"}), std::vector<std::string>{});
}

TEST_F(BashCompletion, FileOptionsCompleteFilesAndValuesNothing) {
  char tmpl[] = "/tmp/derp_completion_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::ofstream(dir + "/alpha.key") << "x";
  std::filesystem::create_directory(dir + "/certs");
  EXPECT_EQ(complete("derp-ping", {"--key-file", dir + "/al"}),
            std::vector<std::string>{dir + "/alpha.key"});
  // --key-file=PATH: bash splits the word at '='.
  EXPECT_EQ(complete("derp-ping", {"--key-file", "=", dir + "/al"}),
            std::vector<std::string>{dir + "/alpha.key"});
  EXPECT_EQ(complete("derp-serve", {"-c", dir + "/al"}),
            std::vector<std::string>{dir + "/alpha.key"});
  EXPECT_EQ(complete("derp-probe", {"lint", dir + "/al"}),
            std::vector<std::string>{dir + "/alpha.key"});
  // A DIR option offers directories only.
  EXPECT_EQ(complete("derp-serve", {"--certdir", dir + "/"}),
            std::vector<std::string>{dir + "/certs"});
  // A value that is not a file: nothing, rather than flags or files.
  EXPECT_EQ(complete("derp-ping", {"--count", ""}), std::vector<std::string>{});
  std::filesystem::remove_all(dir);
}

TEST(ZshCompletion, EveryScriptParses) {
  const std::string zsh = find_program("zsh");
  if (zsh.empty()) GTEST_SKIP() << "zsh is not installed (scripts/install-deps.sh installs it)";
  for (const auto& tool : kTools) {
    const std::string file = std::string(DERP_BUILD_DIR) + "/completions/zsh/_" + tool;
    const std::string script = read_file(file);
    EXPECT_EQ(script.rfind("#compdef " + tool + "\n", 0), 0u) << file;
    EXPECT_EQ(script, generated(tool, {"--completion", "zsh"})) << file;
    auto r = run_program(zsh, {"-n", file});
    EXPECT_EQ(r.exit_code, 0) << tool << ": " << r.err;
    EXPECT_EQ(r.err, "") << tool;
  }
}

}  // namespace
}  // namespace derp::test
