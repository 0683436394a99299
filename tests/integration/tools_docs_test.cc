// docs/CLI.md against the tools as built: every table renders (a header row), each tool's
// section names exactly the flags its --help prints, the defaults the doc tables give are the
// ones --help shows, and claims the doc makes about behaviour hold when the tools are run.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "support/process.h"

namespace derp::test {
namespace {

using namespace std::chrono_literals;

std::string cli_md() {
  std::ifstream in(std::string(DERP_SOURCE_DIR) + "/docs/CLI.md");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> doc_lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The tools and subcommands with a section of their own ("## derp-ping", "### derp-probe lint").
const std::vector<std::string> kDocumentedCommands = {
    "derp-serve", "derp-connect",    "derp-send",    "derp-recv",   "derp-ping", "derp-watch",
    "derp-probe", "derp-probe lint", "derp-captive", "derp-keygen", "derp-bench"};

// Every tool takes these (tools/common/cli.h); "Shared conventions" documents them once.
const std::set<std::string> kEveryToolFlags = {"--help", "--version", "--no-color"};

// Each command's section: from its heading to the next heading of its level or above, or to
// the next command's heading.
std::map<std::string, std::vector<std::string>> command_sections(const std::string& text) {
  std::map<std::string, std::vector<std::string>> out;
  static const std::regex heading("^(#+) (.*)$");
  std::string current;
  size_t level = 0;
  for (const auto& line : doc_lines(text)) {
    std::smatch m;
    if (std::regex_match(line, m, heading)) {
      const std::string title = m[2];
      const bool command = std::find(kDocumentedCommands.begin(), kDocumentedCommands.end(),
                                     title) != kDocumentedCommands.end();
      if (command) {
        current = title;
        level = static_cast<size_t>(m[1].length());
        continue;
      }
      if (!current.empty() && static_cast<size_t>(m[1].length()) <= level) current.clear();
      continue;
    }
    if (!current.empty()) out[current].push_back(line);
  }
  return out;
}

// The code a section holds: its `spans` and the lines of its fenced blocks.
std::vector<std::string> code_of(const std::vector<std::string>& section) {
  std::vector<std::string> out;
  static const std::regex span("`([^`]*)`");
  bool fenced = false;
  for (const auto& line : section) {
    if (line.rfind("```", 0) == 0) {
      fenced = !fenced;
      continue;
    }
    if (fenced) {
      out.push_back(line);
      continue;
    }
    for (auto it = std::sregex_iterator(line.begin(), line.end(), span);
         it != std::sregex_iterator(); ++it) {
      out.push_back((*it)[1]);
    }
  }
  return out;
}

// The long flags a command's section names. In a piece of code, the flags after another
// program's name are that program's: `derp-recv --echo` in derp-ping's section, `derpprobe
// --tls-interval` in derp-probe's, `derp-probe lint` in derp-probe's.
std::set<std::string> doc_flags(const std::string& command, const std::vector<std::string>& sec) {
  const std::string base = command.substr(0, command.find(' '));
  const std::string sub =
      command.find(' ') == std::string::npos ? "" : command.substr(base.size() + 1);
  static const std::regex flag("(^|[^A-Za-z0-9-])(--[a-z][a-z0-9-]*)");
  static const std::regex program("^(derp-[a-z]+|derper|derpprobe|tailscale|tailscaled|curl)$");
  std::set<std::string> out;
  for (const auto& code : code_of(sec)) {
    std::istringstream in(code);
    std::vector<std::string> words;
    for (std::string w; in >> w;) words.push_back(w);
    bool ours = true;
    for (size_t i = 0; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (std::regex_match(w, program)) {
        const std::string next = i + 1 < words.size() ? words[i + 1] : "";
        ours = w == base && (sub.empty() ? next != "lint" : next == sub);
        continue;
      }
      if (!ours) continue;
      for (auto it = std::sregex_iterator(w.begin(), w.end(), flag); it != std::sregex_iterator();
           ++it) {
        out.insert((*it)[2]);
      }
    }
  }
  return out;
}

std::string docs_help_of(const std::string& command) {
  std::vector<std::string> args;
  std::istringstream in(command);
  std::string tool;
  in >> tool;
  for (std::string w; in >> w;) args.push_back(w);
  args.push_back("--help");
  auto r = run_tool(tool, args);
  EXPECT_EQ(r.exit_code, 0) << command << " --help: " << r.err;
  return r.out;
}

// The option lines of --help ("  -c,--count N=4   Number of pings"), by each long name.
std::map<std::string, std::string> help_options(const std::string& help) {
  std::map<std::string, std::string> out;
  static const std::regex name("--[A-Za-z][A-Za-z0-9-]*");
  std::string last;
  for (const auto& line : doc_lines(help)) {
    if (line.rfind("  -", 0) == 0) {
      const std::string column = line.substr(2, line.find(' ', 2) - 2);
      last.clear();
      for (auto it = std::sregex_iterator(column.begin(), column.end(), name);
           it != std::sregex_iterator(); ++it) {
        out[it->str()] = line;
        last += (last.empty() ? "" : "\n") + it->str();
      }
    } else if (!last.empty() && line.rfind("    ", 0) == 0) {
      // The help text wrapped to the next line.
      std::istringstream names(last);
      for (std::string n; std::getline(names, n);) out[n] += line;
    } else {
      last.clear();
    }
  }
  return out;
}

std::string docs_joined(const std::set<std::string>& flags) {
  std::string s;
  for (const auto& f : flags) s += " " + f;
  return s;
}

// "| a | b \| c |" → {"a", "b \| c"}: cells split at unescaped pipes.
std::vector<std::string> table_cells(const std::string& row) {
  std::vector<std::string> cells;
  std::string cell;
  for (size_t i = 1; i < row.size(); ++i) {
    if (row[i] == '|' && row[i - 1] != '\\') {
      const size_t a = cell.find_first_not_of(' ');
      cells.push_back(a == std::string::npos ? ""
                                             : cell.substr(a, cell.find_last_not_of(' ') - a + 1));
      cell.clear();
    } else {
      cell += row[i];
    }
  }
  return cells;
}

// Every block of table rows in the doc.
std::vector<std::vector<std::string>> doc_tables(const std::string& text) {
  std::vector<std::vector<std::string>> tables;
  bool in_table = false;
  for (const auto& line : doc_lines(text)) {
    if (line.rfind("|", 0) == 0) {
      if (!in_table) tables.emplace_back();
      tables.back().push_back(line);
      in_table = true;
    } else {
      in_table = false;
    }
  }
  return tables;
}

TEST(ToolsDocs, EveryTableHasAHeaderRowAndItsColumns) {
  static const std::regex separator(R"(^\|( *:?-+:? *\|)+$)");
  const auto tables = doc_tables(cli_md());
  ASSERT_GT(tables.size(), 5u);
  for (const auto& t : tables) {
    ASSERT_GE(t.size(), 2u) << "a table of one row renders as text: " << t[0];
    EXPECT_TRUE(std::regex_match(t[1], separator))
        << "no header row (its second line is not |---|): " << t[0];
    const size_t columns = table_cells(t[0]).size();
    for (const auto& row : t) {
      EXPECT_EQ(table_cells(row).size(), columns)
          << "the header has " << columns << " columns, this row does not: " << row;
    }
  }
}

TEST(ToolsDocs, EachToolsSectionNamesExactlyTheFlagsOfItsHelp) {
  const auto sections = command_sections(cli_md());
  for (const auto& command : kDocumentedCommands) {
    ASSERT_TRUE(sections.count(command)) << "docs/CLI.md has no section for " << command;
    const std::set<std::string> in_doc = doc_flags(command, sections.at(command));
    std::set<std::string> in_help;
    for (const auto& [flag, line] : help_options(docs_help_of(command))) {
      if (!kEveryToolFlags.count(flag)) in_help.insert(flag);
    }
    EXPECT_GT(in_help.size(), 0u) << command << ": --help not parsed";
    std::set<std::string> doc_only, help_only;
    for (const auto& f : in_doc) {
      if (!in_help.count(f) && !kEveryToolFlags.count(f)) doc_only.insert(f);
    }
    for (const auto& f : in_help) {
      if (!in_doc.count(f)) help_only.insert(f);
    }
    EXPECT_EQ(docs_joined(doc_only), "") << command << ": docs/CLI.md names flags --help does not";
    EXPECT_EQ(docs_joined(help_only), "") << command << ": --help has flags docs/CLI.md does not name";
  }
}

// A table's Default column ("`10m`", "1200", "on") is what --help shows: "=10m", or "default:
// on" in the text of a flag. "none", "off" and an empty cell mean no default.
TEST(ToolsDocs, HelpShowsTheDefaultsOfTheDocTables) {
  const std::string text = cli_md();
  const auto sections = command_sections(text);
  int checked = 0;
  for (const auto& command : kDocumentedCommands) {
    ASSERT_TRUE(sections.count(command)) << "docs/CLI.md has no section for " << command;
    const auto options = help_options(docs_help_of(command));
    std::string section_text;
    for (const auto& line : sections.at(command)) section_text += line + "\n";
    for (const auto& t : doc_tables(section_text)) {
      const auto header = table_cells(t[0]);
      const auto col = std::find(header.begin(), header.end(), "Default");
      if (col == header.end()) continue;
      const size_t d = static_cast<size_t>(col - header.begin());
      for (size_t r = 2; r < t.size(); ++r) {
        const auto cells = table_cells(t[r]);
        std::smatch m;
        static const std::regex first_flag("(--[a-z][a-z0-9-]*)");
        if (!std::regex_search(cells[0], m, first_flag) || !options.count(m[1])) continue;
        std::string value = cells[d].substr(0, cells[d].find(' '));
        value.erase(std::remove(value.begin(), value.end(), '`'), value.end());
        if (value.empty() || value == "none" || value == "off" || value == "\"\"") continue;
        const std::string& line = options.at(m[1]);
        EXPECT_TRUE(line.find("=" + value + " ") != std::string::npos ||
                    line.find("=" + value + "\n") != std::string::npos ||
                    line.ends_with("=" + value) ||
                    line.find("default: " + value) != std::string::npos)
            << command << " " << m[1] << ": docs/CLI.md says the default is " << value
            << ", --help does not show it:\n"
            << line;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 20);
}

TEST(ToolsDocs, LintHelpListsTheDerpProbeOptionsItTakes) {
  const auto lint = help_options(docs_help_of("derp-probe lint"));
  for (const char* flag : {"--active", "--json", "--timeout", "--ca-file"}) {
    EXPECT_TRUE(lint.count(flag)) << "derp-probe lint --help does not list " << flag;
  }
  EXPECT_NE(lint.at("--timeout").find("=5s"), std::string::npos) << lint.at("--timeout");
  // And it takes them, before or after MAP.
  const std::string map = ::testing::TempDir() + "derp_docs_empty_map.json";
  std::ofstream(map) << R"({"Regions":{}})";
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"lint", map, "--json", "--timeout", "1s"}, {"lint", "--json", map}}) {
    auto r = run_tool("derp-probe", args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.out.find("\"no-regions\""), std::string::npos) << r.out;
  }
}

TEST(ToolsDocs, SendHelpSaysThePayloadComesFromStdinWithoutData) {
  const auto send = help_options(docs_help_of("derp-send"));
  ASSERT_TRUE(send.count("--data"));
  EXPECT_NE(send.at("--data").find("stdin"), std::string::npos) << send.at("--data");
}

TEST(ToolsDocs, ProbeMissingMapIsTheDocumentedExitCode) {
  auto r = run_tool("derp-probe", {"--derp-map", ::testing::TempDir() + "derp_docs_no_such.json"});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(cli_md().find("a missing or unreadable file is " + std::to_string(r.exit_code)),
            std::string::npos)
      << "docs/CLI.md (derp-probe, Exit) does not give exit " << r.exit_code;
}

// The usage errors docs/CLI.md quotes are the lines the tools print (exit 2, one line), word
// for word: validation errors naming flag and value, zero durations, IPv6 literals without
// brackets, derp-captive's refusals.
TEST(ToolsDocs, QuotedUsageErrorsAreTheToolsLines) {
  std::string doc = cli_md();
  std::replace(doc.begin(), doc.end(), '\n', ' ');  // quotes may wrap
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"derp-ping", {"http://127.0.0.1:1", "--count", "0"}},
      {"derp-ping", {"http://127.0.0.1:1", "--timeout", "0"}},
      {"derp-ping", {"http://127.0.0.1:1", "--peer", "nodekey:11", "--size", "8"}},
      {"derp-ping", {"--derp-map", "m.json", "--region", "abc"}},
      {"derp-connect", {"http://127.0.0.1:1", "--count", "x"}},
      {"derp-ping", {"http://::1:3340/derp"}},
      {"derp-captive", {"https://127.0.0.1"}},
      {"derp-captive", {"127.0.0.1", "--port", "81"}},
  };
  for (const auto& [tool, args] : cases) {
    auto r = run_tool(tool, args);
    EXPECT_EQ(r.exit_code, 2) << tool << ": " << r.err;
    ASSERT_TRUE(r.err.ends_with("\n")) << r.err;
    const std::string line = r.err.substr(0, r.err.size() - 1);
    EXPECT_EQ(line.find('\n'), std::string::npos) << "not one line: " << r.err;
    // Quoted whole, or without the "<tool>: " prefix and the " (see --help)" suffix.
    std::string message = line.substr(tool.size() + 2);
    if (message.ends_with(" (see --help)")) message.resize(message.size() - 13);
    EXPECT_TRUE(doc.find(line) != std::string::npos || doc.find(message) != std::string::npos)
        << "docs/CLI.md does not quote what " << tool << " prints: " << line;
  }
}

// A relay for the behaviour the doc describes.
class ToolsDocsRelay : public ::testing::Test {
 protected:
  void SetUp() override {
    serve_ = std::make_unique<Process>(
        tool_path("derp-serve"),
        std::vector<std::string>{
            "-a", "127.0.0.1:0", "--stun=false", "-c",
            ::testing::TempDir() + "derp_docs_relay_" + std::to_string(::getpid()) + ".key"});
    auto line = serve_->wait_for_line("derp-serve: listening on", 20s, Process::Stream::kStdout);
    ASSERT_TRUE(line) << serve_->err();
    std::smatch m;
    ASSERT_TRUE(std::regex_search(*line, m, std::regex("(http://127\\.0\\.0\\.1:[0-9]+/derp)")));
    url_ = m[1];
  }
  // derp-recv --echo until SIGTERM; its stdout.
  std::string echo_until_sigterm(bool json) {
    std::vector<std::string> args = {url_, "--echo"};
    if (json) args.push_back("--json");
    Process recv(tool_path("derp-recv"), args);
    EXPECT_TRUE(recv.wait_for_line("derp-recv: ready as", 20s, Process::Stream::kStderr))
        << recv.err();
    recv.signal(SIGTERM);
    auto r = recv.wait(20s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  std::unique_ptr<Process> serve_;
  std::string url_;
};

TEST_F(ToolsDocsRelay, RecvEchoSaysDoneOnSigtermOnlyWithJson) {
  EXPECT_EQ(echo_until_sigterm(false), "");
  const std::string out = echo_until_sigterm(true);
  EXPECT_NE(out.find("\"event\":\"done\""), std::string::npos) << out;
  EXPECT_NE(cli_md().find("with\n`--json` after a last line `{\"event\":\"done\",\"received\":N}`; "
                          "in text mode it prints nothing more"),
            std::string::npos)
      << "docs/CLI.md (derp-recv) does not say what SIGTERM prints in each mode";
}

TEST_F(ToolsDocsRelay, EphemeralKeyIsSaidAsTheDocSays) {
  const std::string peer = "nodekey:" + std::string(64, '1');
  auto text = run_tool("derp-send", {url_, "--to", peer, "--data", "x"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  EXPECT_NE(text.out.find(" (ephemeral key) to "), std::string::npos) << text.out;
  auto json = run_tool("derp-send", {url_, "--to", peer, "--data", "x", "--json"});
  EXPECT_NE(json.out.find("\"ephemeral_key\":true"), std::string::npos) << json.out;
  auto ping = run_tool("derp-ping", {url_, "--count", "1", "--interval", "10ms"});
  EXPECT_EQ(ping.exit_code, 0) << ping.err;
  EXPECT_EQ(ping.out.find("ephemeral"), std::string::npos) << ping.out;
  EXPECT_NE(cli_md().find("Only derp-send and derp-recv say so"), std::string::npos);
  EXPECT_EQ(cli_md().find("a fresh ephemeral key and says so"), std::string::npos);
}

}  // namespace
}  // namespace derp::test
