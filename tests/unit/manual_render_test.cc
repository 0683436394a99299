// tools/common/manual.h: roff escaping, the option items and the completions' value hints, on
// a made-up command line.
#include <gtest/gtest.h>

#include "common/exit_codes.h"
#include "common/manual.h"

namespace derp::tools {
namespace {

struct Fixture {
  Fixture() : app("Frobnicate a relay", "derp-frob") {
    app.add_option("--key-file", key_file, ".dot first, back\\slash, naïve → arrow")
        ->type_name("FILE");
    app.add_option("--certdir", dir, "Where the certificates are")->type_name("DIR");
    app.add_option("--count,-c", count, "How many")
        ->type_name("N")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_flag("--quiet", quiet, "'quote first");
    app.add_option("--hidden", hidden, "Not shown")->group("");
    app.add_option("SERVER", server, "The relay")->type_name("URL");
  }
  CLI::App app;
  std::string key_file, dir, hidden, server;
  int count = 4;
  bool quiet = false;
};

TEST(ManualRender, EscapesRoffAndListsVisibleOptions) {
  Fixture f;
  const std::string page = render_man_page(
      f.app, {.description = "First paragraph.\n\nSecond -x.",
              .examples = {{"Frob it:", "derp-frob --count 2 http://127.0.0.1:3340"}}});
  EXPECT_EQ(page.rfind(".TH DERP\\-FROB 1 ", 0), 0u) << page;
  EXPECT_NE(page.find(".SH NAME\nderp\\-frob \\- Frobnicate a relay\n"), std::string::npos);
  EXPECT_NE(page.find("\\fB\\-\\-key\\-file\\fR \\fIFILE\\fR\n"), std::string::npos) << page;
  // A text line never starts a request; '\' and non-ASCII are escaped.
  EXPECT_NE(page.find("\n\\&.dot first, back\\eslash, na\\[u00EF]ve \\[u2192] arrow.\n"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("\n\\&'quote first.\n"), std::string::npos) << page;
  // Short and long names, the type name without the validator, the default and the check.
  EXPECT_NE(page.find("\\fB\\-c\\fR, \\fB\\-\\-count\\fR \\fIN\\fR\nHow many. Default: 4. "
                      "Accepts: POSITIVE.\n"),
            std::string::npos)
      << page;
  EXPECT_NE(page.find("First paragraph.\n.PP\nSecond \\-x.\n"), std::string::npos) << page;
  EXPECT_NE(page.find(".nf\nderp\\-frob \\-\\-count 2 http://127.0.0.1:3340\n.fi"),
            std::string::npos);
  EXPECT_EQ(page.find("hidden"), std::string::npos) << page;
  // Every row of the shared exit-code table.
  for (const auto& row : exit_code_docs()) {
    EXPECT_NE(page.find(".B " + std::to_string(row.code) + "\n"), std::string::npos) << row.code;
  }
  EXPECT_NE(page.find("SEE ALSO"), std::string::npos);
  EXPECT_NE(page.find("\\fBderp\\-serve\\fR(1)"), std::string::npos);
}

TEST(ManualRender, ExitTableLayersComeFromTheToolsMapping) {
  const auto rows = exit_code_docs();
  ASSERT_EQ(rows.size(), 11u);
  EXPECT_EQ(rows[1].layers, std::vector<std::string>{"check"});
  EXPECT_EQ(rows[4].layers, std::vector<std::string>{"connect"});
  EXPECT_EQ(rows[9].layers, (std::vector<std::string>{"io", "closed"}));
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(rows[i].code, static_cast<int>(i));
}

TEST(ManualRender, CompletionsHintFilesAndDirectories) {
  Fixture f;
  const std::string bash = render_bash_completion(f.app);
  EXPECT_NE(bash.find("complete -F _derp_frob derp-frob\n"), std::string::npos) << bash;
  EXPECT_NE(bash.find("    --key-file)\n      compopt -o filenames 2>/dev/null\n"
                      "      mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")"),
            std::string::npos)
      << bash;
  EXPECT_NE(bash.find("--certdir)\n      compopt -o filenames 2>/dev/null\n"
                      "      mapfile -t COMPREPLY < <(compgen -d"),
            std::string::npos)
      << bash;
  EXPECT_EQ(bash.find("--hidden"), std::string::npos);
  const std::string zsh = render_zsh_completion(f.app);
  EXPECT_EQ(zsh.rfind("#compdef derp-frob\n", 0), 0u);
  EXPECT_NE(zsh.find("'--key-file=[.dot first, back\\\\slash, naïve → arrow]:FILE:_files'"),
            std::string::npos)
      << zsh;
  EXPECT_NE(zsh.find("'(-c --count)-c+[How many]:N: '"), std::string::npos) << zsh;
  EXPECT_NE(zsh.find("'--quiet['\\''quote first]'"), std::string::npos) << zsh;
  EXPECT_NE(zsh.find("'1:SERVER:_urls'"), std::string::npos) << zsh;
}

}  // namespace
}  // namespace derp::tools
