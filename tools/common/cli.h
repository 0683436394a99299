// The command line shared by every derp-* tool: CLI11 plus the common flags (SERVER,
// --server-key, --key-file, --json, --timeout, --version, --no-color), one-line errors and exit
// codes.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/manual.h"
#include "derp/client.h"
#include "derp/key.h"
#include "derp/result.h"

namespace derp::tools {

// Validators for numeric flags. A failure reads as one line, "derp-ping: --count must be ≥ 1
// (got 0)" (parse() joins the flag's name), instead of CLI11's range text. They also refuse what
// is not a number: "--region must be an integer (got abc)". `integer` false: a decimal is fine.
CLI::Validator at_least(int64_t min, bool integer = true);
CLI::Validator in_range(int64_t min, int64_t max);
CLI::Validator integer_value();

// A subcommand that takes its parent's options after its own words (CLI11's fallthrough, as in
// "derp-probe lint MAP --json") lists `flags` of the parent in its --help too, under "Options of
// <parent>". CLI11 alone shows only the subcommand's own.
void show_parent_options(CLI::App& sub, std::vector<std::string> flags);

class ToolCli {
 public:
  ToolCli(std::string name, std::string description);

  CLI::App& app() { return app_; }
  const std::string& name() const { return name_; }

  // The shared flags. Call the ones the tool takes before parse().
  // Positional SERVER: http(s)://host[:port][/derp], plus the TLS flags for https:// (--ca-file,
  // --insecure, --cert-name), which only a tool that dials a relay needs. Instead of SERVER,
  // --derp-map FILE|URL --region ID dials a region of a DERP map (Go's NewRegionClient).
  // `required` false: the tool may run without any (derp-bench --raw); it checks that itself.
  void add_server(bool required = true);
  // The same for a tool that takes one or more SERVERs (derp-watch) into `servers`; with
  // --derp-map and --region instead, the tool reads the region's nodes (load_region()).
  void add_servers(std::vector<std::string>& servers);
  // Only the TLS flags (--ca-file, --insecure, --cert-name). add_server() already includes them.
  void add_tls();
  void add_server_key();                // --server-key nodekey:HEX (pin)
  void add_key_file(std::string help);  // --key-file FILE (derper's JSON key file)
  void add_json();                      // --json
  void add_timeout(std::string default_value, std::string help);  // --timeout DURATION
  // --read-timeout DURATION (default 120s, Go's client read deadline; 0 = none): a connection
  // the relay says nothing on for this long is dead and is reconnected (ClientOptions).
  void add_read_timeout();

  // The man page's prose (DESCRIPTION, EXAMPLES, ...); the examples also end --help. The page
  // itself (--help-man) and the completions (--completion bash|zsh), hidden from --help, are
  // generated from the options the tool defined before parse().
  void set_manual(Manual manual);

  // Parses argv and the shared flags' values. std::nullopt: go on. Otherwise the exit code to
  // return now: 0 after --help/--version/--help-man/--completion, 2 after a usage error
  // (printed as one line).
  std::optional<int> parse(int argc, char** argv);

  const std::string& server() const { return server_; }
  bool json() const { return json_; }
  // --no-color (every tool takes it): no colour even on a terminal (common/term.h).
  bool no_color() const { return no_color_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // ClientOptions::read_timeout's default unless the tool took --read-timeout.
  std::chrono::milliseconds read_timeout() const { return read_timeout_; }
  const std::optional<NodePublic>& server_key() const { return server_key_; }
  const std::string& key_file() const { return key_file_; }
  const std::string& ca_file() const { return ca_file_; }
  bool insecure() const { return insecure_; }
  const std::string& cert_name() const { return cert_name_; }
  const std::string& derp_map() const { return derp_map_; }  // "" = dial SERVER
  int region() const { return region_; }
  const std::string& proxy() const { return proxy_; }  // "" = HTTPS_PROXY/HTTP_PROXY/NO_PROXY
  bool websocket() const { return websocket_; }
  // Go's TS_DEBUG_USE_DERP_HTTP: region nodes over http:// (tests of a plain relay only).
  static bool debug_use_derp_http();

  // The key from --key-file, or a fresh ephemeral one when the flag was not given.
  Result<NodePrivate> load_key(bool* ephemeral) const;

  // One line "<tool>: <message> (hint: ...)" on stderr (the hint from failure_hint(), when
  // there is one); with --json also json_error() on stdout.
  // Returns exit_code_for(error.kind).
  int fail(const Error& error) const;
  // fail()'s stderr line alone, for a tool whose --json object carries more than the error.
  int fail_line(const Error& error) const;
  // A check that ran and failed (exit 1, layer "check"; docs/CLI.md "The failure rule"): one
  // line "<tool>: <message> (hint: ...)" on stderr, the message naming what failed; with --json,
  // `report` (the tool's object, printed by the caller afterwards; null when the caller built
  // it with json_check_failed() already) gets "ok": false
  // and "error": {"layer":"check","message",...,"hint"}. Returns kExitCheckFailed.
  int fail_check(const std::string& message, const std::string& hint,
                 nlohmann::json* report) const;
  // "<tool>: <line>" on stderr, flushed (progress and "ready" lines).
  void note(std::string_view line) const;

 private:
  void add_dial_flags(std::string map_help, std::string region_help);
  Error with_hint(const Error& failure) const;  // fail(): the --derp-map node hint

  std::string name_;
  CLI::App app_;
  Manual manual_;
  std::string server_;
  std::string server_key_text_;
  std::optional<NodePublic> server_key_;
  std::string key_file_;
  std::string ca_file_;
  bool insecure_ = false;
  std::string cert_name_;
  bool has_server_ = false;
  std::vector<std::string>* servers_ = nullptr;  // add_servers()
  bool server_required_ = true;
  std::string derp_map_;
  int region_ = 0;
  bool has_region_ = false;
  std::string proxy_;
  bool websocket_ = false;
  bool json_ = false;
  bool no_color_ = false;
  std::string timeout_text_;
  std::chrono::milliseconds timeout_{0};
  bool has_timeout_ = false;
  std::string read_timeout_text_;
  std::chrono::milliseconds read_timeout_ = ClientOptions{}.read_timeout;
  bool has_read_timeout_ = false;
};

}  // namespace derp::tools
