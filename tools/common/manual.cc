#include "common/manual.h"

#include <fmt/format.h>

#include <cctype>
#include <sstream>

#include "common/exit_codes.h"

namespace derp::tools {

namespace {

enum class ValueHint { kNone, kFile, kDir, kUrl };

// One visible option, in the terms every output needs.
struct OptionInfo {
  std::vector<std::string> names;  // "-c", "--count"; empty for a positional
  std::string positional;          // "SERVER"
  std::string metavar;             // "N", "FILE"; "" for a flag
  std::string description;
  std::string default_value;
  std::string constraint;  // the validators' text: "POSITIVE", "INT in [1 - 5000]"
  bool repeatable = false;
  bool required = false;
  ValueHint hint = ValueHint::kNone;
};

ValueHint hint_for(const std::string& metavar) {
  if (metavar.find("FILE") != std::string::npos) return ValueHint::kFile;
  if (metavar.find("DIR") != std::string::npos) return ValueHint::kDir;
  if (metavar.find("URL") != std::string::npos) return ValueHint::kUrl;
  return ValueHint::kNone;
}

OptionInfo describe(CLI::Option* opt) {
  OptionInfo info;
  for (const auto& s : opt->get_snames()) info.names.push_back("-" + s);
  for (const auto& l : opt->get_lnames()) info.names.push_back("--" + l);
  if (opt->get_positional()) info.positional = opt->get_name();
  info.description = opt->get_description();
  info.default_value = opt->get_default_str();
  info.required = opt->get_required();
  info.repeatable = opt->get_expected_max() > 1;
  if (opt->get_type_size() != 0) {
    // get_type_name() is "N:POSITIVE": the type name followed by each validator's text.
    std::string full = opt->get_type_name();
    std::vector<std::string> checks;
    for (int i = 0;; ++i) {
      CLI::Validator* v = nullptr;
      try {
        v = opt->get_validator(i);
      } catch (const CLI::OptionNotFound&) {
        break;
      }
      std::string d = v->get_description();
      if (d.empty()) continue;
      if (auto at = full.rfind(":" + d); at != std::string::npos) full.erase(at, d.size() + 1);
      checks.push_back(std::move(d));
    }
    info.metavar = full;
    for (const auto& c : checks) info.constraint += (info.constraint.empty() ? "" : "; ") + c;
    info.hint = hint_for(info.metavar);
  }
  return info;
}

// The options --help lists (CLI11 hides group ""), in declaration order.
std::vector<OptionInfo> visible_options(CLI::App& app) {
  std::vector<OptionInfo> out;
  for (CLI::Option* opt : app.get_options()) {
    if (opt->get_group().empty()) continue;
    out.push_back(describe(opt));
  }
  return out;
}

// A subcommand's options without the ones its parent has too (-h, --help).
std::vector<OptionInfo> own_options(CLI::App& sub, const std::vector<OptionInfo>& parent) {
  std::vector<OptionInfo> out;
  for (auto& o : visible_options(sub)) {
    bool shared = !o.names.empty();
    for (const auto& n : o.names) {
      bool found = false;
      for (const auto& p : parent) {
        for (const auto& pn : p.names) found = found || pn == n;
      }
      shared = shared && found;
    }
    if (!shared) out.push_back(std::move(o));
  }
  return out;
}

std::vector<CLI::App*> subcommands_of(CLI::App& app) {
  return app.get_subcommands([](CLI::App*) { return true; });
}

// ---- roff

// Text for a roff text line: '\' and '-' escaped (so flags copy as ASCII hyphens), non-ASCII
// as \[uXXXX] (the page stays ASCII whatever the reader's locale), newlines as spaces.
std::string roff(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else if (c == '\n') {
      out += ' ';
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else {
      const size_t len = (c & 0xE0) == 0xC0   ? 2
                         : (c & 0xF0) == 0xE0 ? 3
                         : (c & 0xF8) == 0xF0 ? 4
                                              : 1;
      uint32_t cp = len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : len == 4 ? c & 0x07 : '?';
      for (size_t k = 1; k < len && i + k < s.size(); ++k) {
        cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      }
      i += len - 1;
      out += fmt::format("\\[u{:04X}]", cp);
    }
  }
  return out;
}

// A whole text line: a leading '.' or '\'' would make it a request.
std::string roff_line(std::string_view s) {
  std::string out = roff(s);
  if (!out.empty() && (out[0] == '.' || out[0] == '\'')) out.insert(0, "\\&");
  return out + "\n";
}

std::string upper(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> paragraphs(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find("\n\n", start);
    if (end == std::string::npos) end = text.size();
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 2;
  }
  return out;
}

std::string synopsis_line(const std::string& command, const std::vector<OptionInfo>& options) {
  std::string s = ".B " + roff(command) + "\n[\\fIOPTIONS\\fR]";
  // Required options, then the positionals.
  for (const bool positional : {false, true}) {
    for (const auto& o : options) {
      if (o.positional.empty() == positional || (!positional && !o.required)) continue;
      std::string word = o.positional.empty() ? "\\fB" + roff(o.names.back()) + "\\fR \\fI" +
                                                    roff(o.metavar) + "\\fR"
                                              : "\\fI" + roff(o.positional) + "\\fR";
      if (o.repeatable) word += "...";
      s += o.required ? " " + word : " [" + word + "]";
    }
  }
  return s + "\n";
}

bool mentions(std::string_view text, std::string_view word) {
  std::string lower(text);
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower.find(word) != std::string::npos;
}

void option_items(std::string& page, const std::vector<OptionInfo>& options) {
  for (const auto& o : options) {
    page += ".TP\n";
    if (!o.positional.empty()) {
      page += "\\fI" + roff(o.positional) + "\\fR" + (o.repeatable ? "..." : "") + "\n";
    } else {
      std::string tag;
      for (const auto& n : o.names) tag += (tag.empty() ? "" : ", ") + ("\\fB" + roff(n) + "\\fR");
      if (!o.metavar.empty()) tag += " \\fI" + roff(o.metavar) + "\\fR";
      page += tag + "\n";
    }
    std::string text = o.description;
    if (!text.empty() && text.back() != '.') text += '.';
    // Unless the description already says it.
    if (!o.default_value.empty() && !mentions(o.description, "default")) {
      text += " Default: " + o.default_value + ".";
    }
    if (!o.constraint.empty()) text += " Accepts: " + o.constraint + ".";
    if (o.required) text += " Required.";
    if (o.repeatable && o.positional.empty() && !mentions(o.description, "repeat")) {
      text += " May be repeated.";
    }
    page += roff_line(text);
  }
}

const char* const kTools[] = {"derp-serve",  "derp-connect", "derp-send",  "derp-recv",
                              "derp-ping",   "derp-watch",   "derp-probe", "derp-captive",
                              "derp-keygen", "derp-bench"};

bool has_option(const std::vector<OptionInfo>& options, std::string_view name) {
  for (const auto& o : options) {
    for (const auto& n : o.names) {
      if (n == name) return true;
    }
  }
  return false;
}

}  // namespace

std::pair<std::string, std::string> derp_http_environment() {
  return {"TS_DEBUG_USE_DERP_HTTP",
          "When true (1, t, true), the nodes of a --derp-map region are dialled over http:// at "
          "their DERPPort instead of https://, as Go's derphttp does: for tests against a plain "
          "relay."};
}

std::string render_man_page(CLI::App& app, const Manual& manual) {
  const std::string name = app.get_name();
  const auto options = visible_options(app);
  const auto subs = subcommands_of(app);
  std::string page;
  page += fmt::format(".TH {} 1 \"\" \"libderp {}\" \"User Commands\"\n", roff(upper(name)),
                      DERP_VERSION_STRING);
  page += ".\\\" Generated by " + name + " --help-man from its command-line definition.\n";
  page += ".nh\n";  // no hyphenation: words such as error.layer and flags stay whole
  page += ".SH NAME\n" + roff(name) + " \\- " + roff_line(app.get_description());

  page += ".SH SYNOPSIS\n" + synopsis_line(name, options);
  for (CLI::App* sub : subs) {
    page += ".br\n" + synopsis_line(name + " " + sub->get_name(), visible_options(*sub));
  }

  page += ".SH DESCRIPTION\n";
  bool first = true;
  for (const auto& p :
       paragraphs(manual.description.empty() ? app.get_description() : manual.description)) {
    if (!first) page += ".PP\n";
    first = false;
    page += roff_line(p);
  }

  page += ".SH OPTIONS\n";
  for (const auto& p : paragraphs(manual.options_note)) page += roff_line(p) + ".PP\n";
  option_items(page, options);
  for (CLI::App* sub : subs) {
    page += ".SS \"" + roff(name + " " + sub->get_name()) + "\"\n";
    page += roff_line(sub->get_description() + ". Besides the options above, it takes:");
    option_items(page, own_options(*sub, options));
  }

  page += ".SH \"EXIT STATUS\"\n";
  page += roff_line(
      "The same table for every derp-* tool; with --json a failure's error.layer "
      "names the row.");
  for (const auto& row : exit_code_docs()) {
    page += ".TP\n.B " + std::to_string(row.code) + "\n";
    std::string layers;
    for (const auto& l : row.layers) layers += (layers.empty() ? "" : ", ") + l;
    page += roff_line((layers.empty() ? "" : "(" + layers + ") ") + row.meaning + ".");
  }

  std::vector<std::pair<std::string, std::string>> env;
  if (has_option(options, "--proxy")) {
    env.emplace_back("HTTPS_PROXY, HTTP_PROXY",
                     "Without --proxy: the HTTP proxy for https:// (HTTPS_PROXY) and http:// "
                     "(HTTP_PROXY) relays, as in Go; lower-case names too. Never used for "
                     "localhost or loopback addresses.");
    env.emplace_back("NO_PROXY",
                     "Hosts that bypass the proxy: *, a host name, or a domain suffix, "
                     "comma-separated.");
  }
  if (has_option(options, "--ca-file")) {
    env.emplace_back("SSL_CERT_FILE, SSL_CERT_DIR",
                     "OpenSSL's trusted roots for https:// relays, instead of the system's; "
                     "--ca-file adds to them.");
  }
  if (has_option(options, "--no-color")) {
    env.emplace_back("NO_COLOR",
                     "Any non-empty value: no colour on a terminal, as --no-color "
                     "(https://no-color.org). TERM=dumb also turns colour and the live progress "
                     "line off.");
  }
  for (const auto& e : manual.environment) env.push_back(e);
  if (!env.empty()) {
    page += ".SH ENVIRONMENT\n";
    for (const auto& [var, text] : env) page += ".TP\n.B " + roff(var) + "\n" + roff_line(text);
  }

  if (!manual.examples.empty()) {
    page += ".SH EXAMPLES\n";
    for (const auto& ex : manual.examples) {
      page +=
          ".PP\n" + roff_line(ex.what) + ".PP\n.RS 4\n.nf\n" + roff_line(ex.command) + ".fi\n.RE\n";
    }
  }

  page += ".SH \"SEE ALSO\"\n";
  std::string see;
  for (const char* tool : kTools) {
    if (tool == name) continue;
    see += (see.empty() ? "" : ",\n") + ("\\fB" + roff(tool) + "\\fR(1)");
  }
  page += see + "\n.PP\n" +
          roff_line("docs/CLI.md in the libderp sources describes every tool in full.");
  return page;
}

// ---- bash

namespace {

std::string bash_function_name(const std::string& tool) {
  std::string f = "_" + tool;
  for (auto& c : f) {
    if (c == '-') c = '_';
  }
  return f;
}

// The names as one case pattern ("-c|--count"), or "" when there are none.
std::string case_pattern(const std::vector<const OptionInfo*>& options) {
  std::string p;
  for (const auto* o : options) {
    for (const auto& n : o->names) p += (p.empty() ? "" : "|") + n;
  }
  return p;
}

std::string word_list(const std::vector<OptionInfo>& options) {
  std::string w;
  for (const auto& o : options) {
    for (const auto& n : o.names) w += (w.empty() ? "" : " ") + n;
  }
  return w;
}

}  // namespace

std::string render_bash_completion(CLI::App& app) {
  const std::string name = app.get_name();
  const std::string fn = bash_function_name(name);
  const auto options = visible_options(app);
  const auto subs = subcommands_of(app);
  std::vector<std::vector<OptionInfo>> sub_options;
  for (CLI::App* sub : subs) sub_options.push_back(own_options(*sub, options));

  std::vector<const OptionInfo*> files, dirs, values;
  auto sort_values = [&](const std::vector<OptionInfo>& opts) {
    for (const auto& o : opts) {
      if (!o.positional.empty() || o.metavar.empty()) continue;
      (o.hint == ValueHint::kFile  ? files
       : o.hint == ValueHint::kDir ? dirs
                                   : values)
          .push_back(&o);
    }
  };
  sort_values(options);
  for (const auto& so : sub_options) sort_values(so);

  std::string s;
  s += "# bash completion for " + name + " (generated by `" + name + " --completion bash`)\n";
  s += fn + "() {\n";
  s += "  local cur=${COMP_WORDS[COMP_CWORD]} prev=\n";
  s += "  (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}\n";
  s += "  # --flag=value: bash splits at '=' (COMP_WORDBREAKS)\n";
  s += "  if [[ $cur == = ]]; then\n    cur=\n";
  s += "  elif [[ $prev == = ]] && (( COMP_CWORD > 1 )); then\n";
  s += "    prev=${COMP_WORDS[COMP_CWORD-2]}\n  fi\n";
  s += "  COMPREPLY=()\n";
  s += "  case $prev in\n";
  if (!files.empty()) {
    s += "    " + case_pattern(files) + ")\n";
    s += "      compopt -o filenames 2>/dev/null\n";
    s += "      mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n      return 0 ;;\n";
  }
  if (!dirs.empty()) {
    s += "    " + case_pattern(dirs) + ")\n";
    s += "      compopt -o filenames 2>/dev/null\n";
    s += "      mapfile -t COMPREPLY < <(compgen -d -- \"$cur\")\n      return 0 ;;\n";
  }
  if (!values.empty()) s += "    " + case_pattern(values) + ")\n      return 0 ;;\n";
  s += "  esac\n";
  s += "  local words=\"" + word_list(options) + "\"\n";
  std::string sub_names;
  for (CLI::App* sub : subs) sub_names += (sub_names.empty() ? "" : " ") + sub->get_name();
  if (!subs.empty()) {
    s += "  local sub= w\n";
    s += "  for w in \"${COMP_WORDS[@]:1:COMP_CWORD-1}\"; do\n";
    std::string pattern;
    for (CLI::App* sub : subs) pattern += (pattern.empty() ? "" : "|") + sub->get_name();
    s += "    case $w in " + pattern + ") sub=$w ;; esac\n";
    s += "  done\n";
    s += "  case $sub in\n";
    for (size_t i = 0; i < subs.size(); ++i) {
      s += "    " + subs[i]->get_name() + ") words+=\" " + word_list(sub_options[i]) + "\" ;;\n";
    }
    s += "  esac\n";
  }
  s += "  if [[ $cur == -* ]]; then\n";
  s += "    mapfile -t COMPREPLY < <(compgen -W \"$words\" -- \"$cur\")\n    return 0\n  fi\n";
  // Positional words: a subcommand's name, files where the positional is one.
  if (!subs.empty()) {
    s += "  if [[ -z $sub ]]; then\n";
    s += "    mapfile -t COMPREPLY < <(compgen -W \"" + sub_names + "\" -- \"$cur\")\n";
    s += "    return 0\n  fi\n";
    s += "  case $sub in\n";
    for (size_t i = 0; i < subs.size(); ++i) {
      bool file_positional = false;
      for (const auto& o : sub_options[i]) {
        if (!o.positional.empty() && o.hint == ValueHint::kFile) file_positional = true;
      }
      if (!file_positional) continue;
      s += "    " + subs[i]->get_name() + ")\n      compopt -o filenames 2>/dev/null\n";
      s += "      mapfile -t COMPREPLY < <(compgen -f -- \"$cur\") ;;\n";
    }
    s += "  esac\n";
  } else {
    for (const auto& o : options) {
      if (o.positional.empty() || o.hint != ValueHint::kFile) continue;
      s += "  compopt -o filenames 2>/dev/null\n";
      s += "  mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n";
      break;
    }
  }
  s += "  return 0\n}\n";
  s += "complete -F " + fn + " " + name + "\n";
  return s;
}

// ---- zsh

namespace {

// Inside '...' of the script: ' closes the quote.
std::string zsh_quoted(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out;
}

// The [description] of an _arguments spec: brackets and backslashes escaped.
std::string zsh_description(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '[' || c == ']' || c == '\\') out += '\\';
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

// The message part (between colons): colons escaped.
std::string zsh_message(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string zsh_action(ValueHint hint) {
  switch (hint) {
    case ValueHint::kFile:
      return "_files";
    case ValueHint::kDir:
      return "_files -/";
    case ValueHint::kUrl:
      return "_urls";
    case ValueHint::kNone:
      break;
  }
  return " ";
}

void zsh_option_specs(std::string& s, const std::vector<OptionInfo>& options) {
  for (const auto& o : options) {
    if (!o.positional.empty()) continue;
    std::string exclusive;
    if (o.names.size() > 1 && !o.repeatable) {
      for (const auto& n : o.names) exclusive += (exclusive.empty() ? "" : " ") + n;
      exclusive = "(" + exclusive + ")";
    }
    for (const auto& n : o.names) {
      std::string spec = exclusive + (o.repeatable ? "*" : "") + n;
      if (!o.metavar.empty()) spec += n.size() == 2 ? "+" : "=";
      spec += "[" + zsh_description(o.description) + "]";
      if (!o.metavar.empty()) spec += ":" + zsh_message(o.metavar) + ":" + zsh_action(o.hint);
      s += "  '" + zsh_quoted(spec) + "' \\\n";
    }
  }
}

}  // namespace

std::string render_zsh_completion(CLI::App& app) {
  const std::string name = app.get_name();
  const auto options = visible_options(app);
  const auto subs = subcommands_of(app);
  std::string s = "#compdef " + name + "\n";
  s += "# zsh completion for " + name + " (generated by `" + name + " --completion zsh`)\n";
  s += "_arguments -s -S \\\n";
  zsh_option_specs(s, options);
  int position = 1;
  for (const auto& o : options) {
    if (o.positional.empty()) continue;
    const std::string where = o.repeatable ? "*" : std::to_string(position++);
    s += "  '" + zsh_quoted(where + ":" + zsh_message(o.positional) + ":" + zsh_action(o.hint)) +
         "' \\\n";
  }
  if (!subs.empty()) {
    std::string names;
    for (CLI::App* sub : subs) names += (names.empty() ? "" : " ") + sub->get_name();
    s += "  '" + zsh_quoted(std::to_string(position++) + "::command:(" + names + ")") + "' \\\n";
    for (CLI::App* sub : subs) {
      const auto sub_opts = own_options(*sub, options);
      zsh_option_specs(s, sub_opts);
      for (const auto& o : sub_opts) {
        if (o.positional.empty()) continue;
        s += "  '" +
             zsh_quoted(std::to_string(position++) + ":" + zsh_message(o.positional) + ":" +
                        zsh_action(o.hint)) +
             "' \\\n";
      }
    }
  }
  s += "  && return 0\n";
  return s;
}

std::string help_footer(const Manual& manual) {
  if (manual.examples.empty()) return "";
  std::string s = "Examples:\n";
  for (const auto& ex : manual.examples) s += "  " + ex.command + "\n";
  return s;
}

}  // namespace derp::tools
