#include "common/cli.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <unistd.h>

#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"
#include "common/term.h"

namespace derp::tools {

namespace {

// Thrown by the hidden --help-man / --completion as soon as CLI11 meets them (before it checks
// required options), caught in parse(): what to print.
struct GeneratedOutputRequest {
  std::string kind;  // "man", "bash", "zsh"
};

// "must be ..." when `text` is not a number in [min, max], else "".
std::string check_number(const std::string& text, bool integer, std::optional<int64_t> min,
                         std::optional<int64_t> max) {
  double value = 0;
  if (integer) {
    int64_t v = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (ec != std::errc() || ptr != end) return "must be an integer (got " + text + ")";
    value = static_cast<double>(v);
  } else {
    char* end = nullptr;
    value = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(value)) {
      return "must be a number (got " + text + ")";
    }
  }
  const bool low = min && value < static_cast<double>(*min);
  const bool high = max && value > static_cast<double>(*max);
  if (!low && !high) return "";
  if (min && max) {
    return "must be between " + std::to_string(*min) + " and " + std::to_string(*max) + " (got " +
           text + ")";
  }
  if (min) return "must be \u2265 " + std::to_string(*min) + " (got " + text + ")";
  return "must be \u2264 " + std::to_string(*max) + " (got " + text + ")";
}

// CLI11's own wording of a bad value, as one line naming the flag and the value.
std::string usage_message(const CLI::ParseError& e) {
  std::string text = e.what();
  // Ours: "--count: must be ≥ 1 (got 0)" (CLI11 puts ": " after the name).
  if (auto at = text.find(": must be "); at != std::string::npos) {
    return text.erase(at, 1);
  }
  // "Could not convert: --region = abc"
  static constexpr std::string_view kConvert = "Could not convert: ";
  if (text.starts_with(kConvert)) {
    const std::string rest = text.substr(kConvert.size());
    if (auto eq = rest.find(" = "); eq != std::string::npos) {
      return rest.substr(0, eq) + " cannot take the value " + rest.substr(eq + 3);
    }
  }
  return text;
}

// A repeatable option starts empty: that is no default to show ("--fault SPEC=[]").
void clear_empty_list_defaults(CLI::App& app) {
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_default_str() == "[]") opt->default_str("");
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    clear_empty_list_defaults(*sub);
  }
}

// The subcommand's help, then the parent's options it takes (show_parent_options()); in the
// footer's place, since CLI11 2.1's make_groups() is not virtual.
class WithParentOptions : public CLI::Formatter {
 public:
  WithParentOptions(std::string group, std::vector<const CLI::Option*> opts)
      : group_(std::move(group)), opts_(std::move(opts)) {}
  std::string make_footer(const CLI::App* app) const override {
    // make_group() opens with a blank line; the options before it already end with one.
    return make_group(group_, false, opts_).substr(1) + CLI::Formatter::make_footer(app);
  }

 private:
  std::string group_;
  std::vector<const CLI::Option*> opts_;
};

}  // namespace

void show_parent_options(CLI::App& sub, std::vector<std::string> flags) {
  CLI::App* parent = sub.get_parent();
  std::vector<const CLI::Option*> opts;
  for (const auto& flag : flags) {
    const CLI::Option* opt = parent->get_option_no_throw(flag);
    if (opt != nullptr) opts.push_back(opt);
  }
  sub.formatter(
      std::make_shared<WithParentOptions>("Options of " + parent->get_name(), std::move(opts)));
}

CLI::Validator at_least(int64_t min, bool integer) {
  return CLI::Validator(
      [min, integer](std::string& text) { return check_number(text, integer, min, std::nullopt); },
      "");
}

CLI::Validator in_range(int64_t min, int64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) { return check_number(text, true, min, max); }, "");
}

CLI::Validator integer_value() {
  return CLI::Validator(
      [](std::string& text) { return check_number(text, true, std::nullopt, std::nullopt); }, "");
}

ToolCli::ToolCli(std::string name, std::string description)
    : name_(std::move(name)), app_(std::move(description), name_) {
  // --help shows every option's default ("--count N=4"): the value the option's variable holds
  // when it is defined. An option without a meaningful one clears it (default_str("")).
  app_.option_defaults()->always_capture_default();
  app_.set_version_flag("--version", name_ + " " + DERP_VERSION_STRING,
                        "Print the version and exit");
  app_.add_flag("--no-color", no_color_,
                "No colour on a terminal (as NO_COLOR=1; piped output never has any)");
  // Group "": not in --help (nor in the page they generate).
  app_.add_flag_callback(
          "--help-man", [] { throw GeneratedOutputRequest{"man"}; },
          "Print the man page (roff) and exit")
      ->group("")
      ->trigger_on_parse();
  app_.add_option_function<std::string>(
          "--completion", [](const std::string& shell) { throw GeneratedOutputRequest{shell}; },
          "Print the bash or zsh completion script and exit")
      ->check(CLI::IsMember({"bash", "zsh"}))
      ->type_name("SHELL")
      ->group("")
      ->trigger_on_parse();
}

void ToolCli::set_manual(Manual manual) {
  manual_ = std::move(manual);
  app_.footer(help_footer(manual_));
}

void ToolCli::add_server(bool required) {
  has_server_ = true;
  server_required_ = required;
  app_.add_option("SERVER", server_,
                  "DERP server URL: http(s)://host[:port][/derp] (or use --derp-map and --region)")
      ->type_name("URL");
  add_dial_flags("Dial a region of this DERP map (JSON file, or http(s):// URL) instead of SERVER",
                 "With --derp-map: the RegionID to dial");
}

void ToolCli::add_servers(std::vector<std::string>& servers) {
  has_server_ = true;
  servers_ = &servers;
  app_.add_option("SERVER", servers,
                  "Relay URLs: http(s)://host[:port][/derp] (one or more; or use --derp-map and "
                  "--region)")
      ->type_name("URL");
  add_dial_flags("Use every DERP node (non-STUNOnly) of a region of this DERP map (JSON file, or "
                 "http(s):// URL) instead of SERVERs",
                 "With --derp-map: the RegionID whose nodes to use");
}

void ToolCli::add_dial_flags(std::string map_help, std::string region_help) {
  app_.add_option("--derp-map", derp_map_, std::move(map_help))->type_name("FILE|URL");
  app_.add_option("--region", region_, std::move(region_help))
      ->type_name("ID")
      ->default_str("")  // no default region: --derp-map needs --region
      ->check(integer_value());
  app_.add_option("--proxy", proxy_,
                  "Connect through this HTTP proxy (http://[user:pass@]host:port, CONNECT); "
                  "default: HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment")
      ->type_name("URL");
  app_.add_flag("--websocket", websocket_,
                "Carry DERP in WebSocket binary messages (subprotocol derp) instead of the "
                "Upgrade: DERP stream");
  add_tls();
}

void ToolCli::add_tls() {
  app_.add_option("--ca-file", ca_file_,
                  "https://: also trust the CA certificates in this PEM file")
      ->type_name("FILE");
  app_.add_flag("--insecure", insecure_,
                "https://: do not verify the relay's certificate (testing only)");
  app_.add_option("--cert-name", cert_name_,
                  "https://: NAME the certificate must be valid for instead of the URL's host, "
                  "or sha256-raw:HEX to pin the certificate's SHA-256")
      ->type_name("NAME");
}

void ToolCli::add_server_key() {
  app_.add_option("--server-key", server_key_text_,
                  "Expected server public key (nodekey:HEX); the handshake fails otherwise")
      ->type_name("KEY");
}

void ToolCli::add_key_file(std::string help) {
  app_.add_option("--key-file", key_file_, std::move(help))->type_name("FILE");
}

void ToolCli::add_json() {
  app_.add_flag("--json", json_, "Machine-readable output (JSON; one object per line for streams)");
}

void ToolCli::add_timeout(std::string default_value, std::string help) {
  timeout_text_ = std::move(default_value);
  has_timeout_ = true;
  app_.add_option("--timeout", timeout_text_, std::move(help))
      ->type_name("DURATION")
      ->default_str(timeout_text_);
}

void ToolCli::add_read_timeout() {
  read_timeout_text_ = "120s";
  has_read_timeout_ = true;
  app_.add_option("--read-timeout", read_timeout_text_,
                  "Declare the connection dead when the relay sends nothing for this long, and "
                  "reconnect (Go's read deadline; relays send keep-alives every 60 s; 0 = never)")
      ->type_name("DURATION")
      ->default_str(read_timeout_text_);
}

std::optional<int> ToolCli::parse(int argc, char** argv) {
  clear_empty_list_defaults(app_);
  try {
    app_.parse(argc, argv);
  } catch (const GeneratedOutputRequest& request) {
    if (request.kind == "man") {
      std::cout << render_man_page(app_, manual_);
    } else if (request.kind == "bash") {
      std::cout << render_bash_completion(app_);
    } else {
      std::cout << render_zsh_completion(app_);
    }
    std::cout << std::flush;
    return kExitOk;
  } catch (const CLI::CallForHelp& e) {
    return app_.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app_.exit(e);
  } catch (const CLI::CallForVersion&) {
    std::cout << name_ << " " << DERP_VERSION_STRING << "\n";
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    // --json is honoured even when the rest of the line is bad, so scripts get an object.
    for (int i = 1; i < argc; ++i) {
      if (std::strcmp(argv[i], "--json") == 0) json_ = true;
    }
    return fail(Error(ErrorKind::kUsage, usage_message(e) + " (see --help)"));
  }
  if (has_server_) {
    has_region_ = app_.count("--region") > 0;
    std::string why;
    const bool have_server = !server_.empty() || (servers_ && !servers_->empty());
    if (have_server && !derp_map_.empty()) {
      why = "give either SERVER or --derp-map, not both";
    } else if (!have_server && derp_map_.empty() && server_required_) {
      why = "SERVER is required (or --derp-map with --region)";
    } else if (!derp_map_.empty() && !has_region_) {
      why = "--derp-map needs --region ID";
    } else if (derp_map_.empty() && has_region_) {
      why = "--region needs --derp-map";
    } else if (!derp_map_.empty() && !cert_name_.empty()) {
      // The client verifies each node by the map's CertName (or InsecureForTests).
      why = "--cert-name does not apply to --derp-map: the node's CertName is used";
    }
    if (!why.empty()) return fail(Error(ErrorKind::kUsage, why + " (see --help)"));
  }
  if (!server_key_text_.empty()) {
    auto k = NodePublic::parse_any(server_key_text_);
    if (!k) return fail(k.error().wrap("--server-key"));
    server_key_ = *k;
  }
  if (has_timeout_) {
    auto d = parse_positive_duration("--timeout", timeout_text_);
    if (!d) return fail(d.error());
    timeout_ = to_millis(*d);
  }
  if (has_read_timeout_) {
    auto d = parse_duration(read_timeout_text_);
    if (!d) return fail(d.error().wrap("--read-timeout"));
    read_timeout_ = to_millis(*d);
  }
  return std::nullopt;
}

bool ToolCli::debug_use_derp_http() {
  // Go's envknob.Bool: strconv.ParseBool's true spellings.
  const char* v = std::getenv("TS_DEBUG_USE_DERP_HTTP");
  if (v == nullptr) return false;
  const std::string_view s(v);
  return s == "1" || s == "t" || s == "T" || s == "true" || s == "TRUE" || s == "True";
}

Result<NodePrivate> ToolCli::load_key(bool* ephemeral) const {
  if (key_file_.empty()) {
    if (ephemeral) *ephemeral = true;
    return NodePrivate::generate();
  }
  if (ephemeral) *ephemeral = false;
  return load_key_file(key_file_);
}

Error ToolCli::with_hint(const Error& failure) const {
  // A node of a --derp-map is verified by its CertName: the hint says so (also in --json).
  Error error = failure;
  if (!derp_map_.empty() && error.hint.empty()) error.hint = failure_hint(error, true);
  return error;
}

int ToolCli::fail_line(const Error& failure) const {
  const Error error = with_hint(failure);
  // Still one line: the hint, when there is one, follows the message.
  std::string hint = failure_hint(error);
  std::cerr << name_ << ": " << error.message << (hint.empty() ? "" : " (hint: " + hint + ")")
            << "\n"
            << std::flush;
  return exit_code_for(error.kind);
}

int ToolCli::fail(const Error& failure) const {
  const int code = fail_line(failure);
  if (json_) print_json_line(json_error(with_hint(failure)));
  return code;
}

int ToolCli::fail_check(const std::string& message, const std::string& hint,
                        nlohmann::json* report) const {
  const Palette err = palette_for(STDERR_FILENO, json_, no_color_);
  std::cerr << name_ << ": " << err.bad(message) << (hint.empty() ? "" : " (hint: " + hint + ")")
            << "\n"
            << std::flush;
  if (json_ && report != nullptr) {
    (*report)["ok"] = false;
    (*report)["error"] = json_check_failed(message, hint)["error"];
  }
  return kExitCheckFailed;
}

void ToolCli::note(std::string_view line) const {
  std::cerr << name_ << ": " << line << "\n" << std::flush;
}

}  // namespace derp::tools
