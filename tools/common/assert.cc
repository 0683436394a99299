#include "common/assert.h"

#include <charconv>
#include <cmath>
#include <cstdio>

namespace derp::tools {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }
bool is_ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_ident(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }
bool is_arg(char c) { return is_ident(c) || c == '.' || c == ':' || c == '-'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

const char* unit_name(MetricKind kind) {
  switch (kind) {
    case MetricKind::kDuration:
      return "ms";
    case MetricKind::kPercent:
      return "%";
    case MetricKind::kCount:
    case MetricKind::kBool:
    case MetricKind::kName:
      return "";
  }
  return "";
}

const char* units_allowed(MetricKind kind) {
  switch (kind) {
    case MetricKind::kDuration:
      return "ns, us, ms, s";
    case MetricKind::kPercent:
      return "%";
    case MetricKind::kCount:
      return "k, M, G or none";
    case MetricKind::kBool:
    case MetricKind::kName:
      return "none";
  }
  return "";
}

// The factor turning a value written with `unit` into the kind's canonical unit; nullopt when
// the unit does not fit the kind.
std::optional<double> unit_factor(std::string_view unit, MetricKind kind) {
  switch (kind) {
    case MetricKind::kDuration:
      if (unit.empty() || unit == "ms") return 1.0;
      if (unit == "ns") return 1e-6;
      if (unit == "us" || unit == "\xC2\xB5s") return 1e-3;
      if (unit == "s") return 1e3;
      return std::nullopt;
    case MetricKind::kPercent:
      if (unit.empty() || unit == "%") return 1.0;
      return std::nullopt;
    case MetricKind::kCount:
      if (unit.empty()) return 1.0;
      if (unit == "k") return 1e3;
      if (unit == "M") return 1e6;
      if (unit == "G") return 1e9;
      return std::nullopt;
    case MetricKind::kBool:
    case MetricKind::kName:
      return std::nullopt;  // their values are words, parsed apart
  }
  return std::nullopt;
}

Error usage(std::string_view term, const std::string& why) {
  return Error(ErrorKind::kUsage, "--assert \"" + std::string(term) + "\": " + why);
}

Result<Assertion> parse_term(std::string_view term, std::span<const MetricSpec> known) {
  Assertion a;
  a.text = std::string(term);
  size_t i = 0;
  auto skip = [&] {
    while (i < term.size() && is_space(term[i])) ++i;
  };
  if (i >= term.size() || !is_ident_start(term[i])) {
    return usage(term, "expected a metric name, as in p99<5ms");
  }
  size_t start = i;
  while (i < term.size() && is_ident(term[i])) ++i;
  a.metric = std::string(term.substr(start, i - start));
  skip();
  bool has_arg = false;
  if (i < term.size() && term[i] == '(') {
    has_arg = true;
    ++i;
    skip();
    size_t arg_start = i;
    while (i < term.size() && is_arg(term[i])) ++i;
    a.argument = std::string(term.substr(arg_start, i - arg_start));
    skip();
    if (i >= term.size() || term[i] != ')' || a.argument.empty()) {
      return usage(term, "expected " + a.metric + "(ARGUMENT)");
    }
    ++i;
    skip();
  }

  const MetricSpec* spec = nullptr;
  for (const auto& m : known) {
    if (m.name == a.metric) spec = &m;
  }
  if (!spec) {
    return usage(term,
                 "unknown metric \"" + a.metric + "\" (known: " + describe_metrics(known) + ")");
  }
  if (spec->takes_argument && !has_arg) {
    return usage(term, a.metric + " takes an argument: " + a.metric + "(ARGUMENT)");
  }
  if (!spec->takes_argument && has_arg) return usage(term, a.metric + " takes no argument");
  a.kind = spec->kind;

  std::string_view rest = term.substr(i);
  struct OpText {
    std::string_view text;
    AssertOp op;
  };
  // Two-character operators first so "<=" is not read as "<".
  static constexpr OpText kOps[] = {{"<=", AssertOp::kLessEqual}, {">=", AssertOp::kGreaterEqual},
                                    {"==", AssertOp::kEqual},     {"!=", AssertOp::kNotEqual},
                                    {"<", AssertOp::kLess},       {">", AssertOp::kGreater}};
  bool found = false;
  for (const auto& o : kOps) {
    if (rest.starts_with(o.text)) {
      a.op = o.op;
      i += o.text.size();
      found = true;
      break;
    }
  }
  if (!found) return usage(term, "expected a comparison (< <= > >= == !=) after " + a.metric);
  skip();
  if (a.kind == MetricKind::kBool || a.kind == MetricKind::kName) {
    if (a.op != AssertOp::kEqual && a.op != AssertOp::kNotEqual) {
      return usage(term, a.metric + " compares only with == or !=");
    }
    std::string_view word = trim(term.substr(i));
    if (a.kind == MetricKind::kBool) {
      if (word == "true" || word == "yes" || word == "1") {
        a.want = 1;
      } else if (word == "false" || word == "no" || word == "0") {
        a.want = 0;
      } else {
        return usage(term, a.metric + " is true or false");
      }
      return a;
    }
    bool good = !word.empty();
    for (char c : word) good = good && is_arg(c);
    if (!good) return usage(term, "expected a name after " + std::string(assert_op_text(a.op)));
    a.want_text = std::string(word);
    return a;
  }

  std::string_view value = trim(term.substr(i));
  size_t num_end = 0;
  while (num_end < value.size() &&
         ((value[num_end] >= '0' && value[num_end] <= '9') || value[num_end] == '.' ||
          (num_end == 0 && (value[num_end] == '-' || value[num_end] == '+')))) {
    ++num_end;
  }
  std::string_view number = value.substr(0, num_end);
  if (!number.empty() && number.front() == '+') number.remove_prefix(1);
  double v = 0;
  auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
  if (number.empty() || ec != std::errc() || p != number.data() + number.size() ||
      !std::isfinite(v)) {
    return usage(term, "expected a number after " + std::string(assert_op_text(a.op)));
  }
  std::string_view unit = trim(value.substr(num_end));
  auto factor = unit_factor(unit, a.kind);
  if (!factor) {
    return usage(term, "unit \"" + std::string(unit) + "\" does not fit " + a.metric + " (use " +
                           units_allowed(a.kind) + ")");
  }
  a.want = v * *factor;
  // Shown back in the unit it was given ("want <1ns", not "want <0ms").
  if (!unit.empty()) a.want_text = std::string(number) + std::string(unit);
  return a;
}

bool compare(double value, AssertOp op, double want) {
  switch (op) {
    case AssertOp::kLess:
      return value < want;
    case AssertOp::kLessEqual:
      return value <= want;
    case AssertOp::kGreater:
      return value > want;
    case AssertOp::kGreaterEqual:
      return value >= want;
    case AssertOp::kEqual:
      return value == want;
    case AssertOp::kNotEqual:
      return value != want;
  }
  return false;
}

std::string metric_label(const Assertion& a) {
  return a.argument.empty() ? a.metric : a.metric + "(" + a.argument + ")";
}

}  // namespace

const char* assert_op_text(AssertOp op) {
  switch (op) {
    case AssertOp::kLess:
      return "<";
    case AssertOp::kLessEqual:
      return "<=";
    case AssertOp::kGreater:
      return ">";
    case AssertOp::kGreaterEqual:
      return ">=";
    case AssertOp::kEqual:
      return "==";
    case AssertOp::kNotEqual:
      return "!=";
  }
  return "?";
}

std::string format_metric(double value, MetricKind kind) {
  if (kind == MetricKind::kBool) return value != 0 ? "true" : "false";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.3f", value);
  std::string s = buf;
  // Trim trailing zeros of the fraction: 7.200 -> 7.2, 5.000 -> 5.
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s + unit_name(kind);
}

std::string describe_metrics(std::span<const MetricSpec> known) {
  std::string out;
  for (const auto& m : known) {
    if (!out.empty()) out += ", ";
    out += m.takes_argument ? m.name + "(ARG)" : m.name;
    if (m.kind == MetricKind::kBool) {
      out += " (true/false)";
    } else if (m.kind == MetricKind::kName) {
      out += " (name)";
    } else if (m.kind != MetricKind::kCount) {
      out += std::string(" (") + unit_name(m.kind) + ")";
    }
  }
  return out;
}

Result<std::vector<Assertion>> parse_asserts(std::string_view text,
                                             std::span<const MetricSpec> known) {
  std::vector<Assertion> out;
  size_t start = 0;
  for (;;) {
    // Commas inside name(ARG) do not split; ARG cannot hold one anyway, so split on every comma.
    size_t comma = text.find(',', start);
    std::string_view term =
        trim(text.substr(start, comma == std::string_view::npos ? text.npos : comma - start));
    if (term.empty()) {
      return Error(ErrorKind::kUsage, "--assert \"" + std::string(text) +
                                          "\": empty comparison (write them as p99<5ms,loss==0)");
    }
    auto a = parse_term(term, known);
    if (!a) return std::move(a).error();
    out.push_back(std::move(*a));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return out;
}

Result<std::vector<Assertion>> parse_asserts(std::span<const std::string> texts,
                                             std::span<const MetricSpec> known) {
  std::vector<Assertion> out;
  for (const auto& t : texts) {
    auto one = parse_asserts(std::string_view(t), known);
    if (!one) return std::move(one).error();
    for (auto& a : *one) out.push_back(std::move(a));
  }
  return out;
}

AssertReport evaluate_asserts(std::span<const Assertion> asserts, const MetricLookup& lookup) {
  AssertReport report;
  for (const auto& a : asserts) {
    AssertOutcome o;
    o.assertion = a;
    o.value = lookup(a.metric, a.argument);
    o.ok = o.value.has_value() && compare(*o.value, a.op, a.want);
    report.outcomes.push_back(std::move(o));
  }
  return report;
}

bool AssertReport::ok() const {
  for (const auto& o : outcomes) {
    if (!o.ok) return false;
  }
  return true;
}

std::string AssertReport::summary() const {
  std::string line;
  for (const auto& f : failures()) line += (line.empty() ? "" : "; ") + f;
  return line;
}

std::vector<std::string> AssertReport::failures() const {
  std::vector<std::string> out;
  for (const auto& o : outcomes) {
    if (o.ok) continue;
    const Assertion& a = o.assertion;
    std::string got = !o.value                                 ? "n/a (not measured)"
                      : a.kind == MetricKind::kName && name_of ? name_of(a.metric, *o.value)
                                                               : format_metric(*o.value, a.kind);
    const std::string want =
        !a.want_text.empty() ? a.want_text : format_metric(a.want, a.kind);
    out.push_back("assert failed: " + metric_label(a) + "=" + got + ", want " +
                  assert_op_text(a.op) + want);
  }
  return out;
}

nlohmann::json AssertReport::to_json() const {
  auto arr = nlohmann::json::array();
  for (const auto& o : outcomes) {
    const Assertion& a = o.assertion;
    nlohmann::json j = {{"expr", a.text}, {"metric", a.metric}};
    if (!a.argument.empty()) j["argument"] = a.argument;
    if (!o.value) {
      j["value"] = nullptr;
    } else if (a.kind == MetricKind::kBool) {
      j["value"] = *o.value != 0;
    } else {
      j["value"] = *o.value;
    }
    if (a.kind == MetricKind::kName && o.value && name_of) {
      j["value_text"] = name_of(a.metric, *o.value);
    }
    j["unit"] = unit_name(a.kind);
    j["op"] = assert_op_text(a.op);
    if (a.kind == MetricKind::kBool) {
      j["want"] = a.want != 0;
    } else {
      j["want"] = a.want;
    }
    if (a.kind == MetricKind::kName) j["want_text"] = a.want_text;
    j["ok"] = o.ok;
    arr.push_back(std::move(j));
  }
  return arr;
}

}  // namespace derp::tools
