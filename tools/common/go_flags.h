// Go-style command lines for tools that stand in for a Go program (derp-serve for derper).
// Go's flag package takes every flag with one or two dashes (-a, --a, -stun-port 0,
// -verify-client-url=URL, -stun=false); CLI11 wants short names with one dash and long names
// with two. normalise_go_flags() rewrites argv into CLI11's form before parsing, and refuses
// the Go program's flags the tool does not implement, naming them, so none is silently ignored.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace derp::tools {

struct GoFlagPolicy {
  // Long names the Go program has and this tool refuses: name → why (shown to the user).
  std::vector<std::pair<std::string, std::string>> refused;
  // Single-letter names that may be written "-x=value" (rewritten to "-x value").
  std::string short_names;
};

struct NormalisedArgs {
  std::vector<std::string> args;  // argv[0] included
  std::optional<std::string> error;  // set when a refused flag was given: the one-line message
};

// Rewrites "-name…" (two or more letters after one dash) to "--name…" and "-x=v" to "-x v",
// up to a "--" terminator; positional words and values are untouched. A value that follows a
// flag and starts with '-' (e.g. "-http-port -1") is kept as is: a dash and a digit is never
// taken for a flag.
NormalisedArgs normalise_go_flags(int argc, const char* const* argv, const GoFlagPolicy& policy);

// Holds the rewritten strings and the char* array CLI11 parses.
class ArgvHolder {
 public:
  explicit ArgvHolder(std::vector<std::string> args);
  int argc() const { return static_cast<int>(ptrs_.size()) - 1; }
  char** argv() { return ptrs_.data(); }

 private:
  std::vector<std::string> args_;
  std::vector<char*> ptrs_;
};

}  // namespace derp::tools
