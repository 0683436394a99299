// Man pages and shell completions generated from a tool's CLI11 definition, so that the flags
// have one source: the tool's own .cc. ToolCli's hidden --help-man and --completion bash|zsh
// print them; the build writes them to man/man1 and completions/ (CMakeLists.txt).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <utility>
#include <vector>

namespace derp::tools {

struct ManualExample {
  std::string what;     // one sentence: what the command shows
  std::string command;  // the command line, as typed
};

// The prose of a tool's page: what its flags cannot say.
struct Manual {
  // Default member initializers, so designated initializers may leave fields out.
  std::string description{};  // DESCRIPTION; paragraphs separated by a blank line
  std::vector<ManualExample> examples{};
  std::string options_note{};  // a paragraph heading OPTIONS (derp-serve: derper's spellings)
  // ENVIRONMENT entries beyond the ones implied by the flags (--proxy, --ca-file).
  std::vector<std::pair<std::string, std::string>> environment{};
};

// TS_DEBUG_USE_DERP_HTTP, for the tools whose region dialing honours it.
std::pair<std::string, std::string> derp_http_environment();

// The section-1 roff page of `app` (visible options and subcommands, the exit-code table).
std::string render_man_page(CLI::App& app, const Manual& manual);
// A bash function registered with `complete -F`: flags, files for FILE options.
std::string render_bash_completion(CLI::App& app);
// A `#compdef` _arguments script with the flags' descriptions.
std::string render_zsh_completion(CLI::App& app);

// "Examples:" lines for the --help footer ("" without examples).
std::string help_footer(const Manual& manual);

}  // namespace derp::tools
