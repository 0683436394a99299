#include "common/go_flags.h"

#include <fmt/format.h>

namespace derp::tools {

namespace {

bool is_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

NormalisedArgs normalise_go_flags(int argc, const char* const* argv, const GoFlagPolicy& policy) {
  NormalisedArgs out;
  if (argc > 0) out.args.emplace_back(argv[0]);
  bool rest_positional = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (rest_positional || a.size() < 2 || a[0] != '-') {
      out.args.push_back(std::move(a));
      continue;
    }
    if (a == "--") {
      rest_positional = true;
      out.args.push_back(std::move(a));
      continue;
    }
    // "-1", "-0.5": a negative number, i.e. a value.
    const size_t dashes = a[1] == '-' ? 2 : 1;
    if (a.size() <= dashes || !is_letter(a[dashes])) {
      out.args.push_back(std::move(a));
      continue;
    }
    const std::string body = a.substr(dashes);
    const size_t eq = body.find('=');
    const std::string name = body.substr(0, eq);
    for (const auto& [refused, why] : policy.refused) {
      if (name == refused) {
        out.error = fmt::format("derper flag -{} is not supported: {}", name, why);
        return out;
      }
    }
    if (name.size() == 1) {
      // Go's "-a=:3340" / "--a :3340"; CLI11 takes "-a :3340".
      if (policy.short_names.find(name[0]) != std::string::npos && eq != std::string::npos) {
        out.args.push_back("-" + name);
        out.args.push_back(body.substr(eq + 1));
      } else {
        out.args.push_back("-" + body);
      }
      continue;
    }
    out.args.push_back("--" + body);
  }
  return out;
}

ArgvHolder::ArgvHolder(std::vector<std::string> args) : args_(std::move(args)) {
  for (auto& s : args_) ptrs_.push_back(s.data());
  ptrs_.push_back(nullptr);
}

}  // namespace derp::tools
