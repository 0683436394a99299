#include "server/metrics.h"

#include <fmt/format.h>

#include <array>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "server/relay.h"
#include "server/stats.h"

namespace derp::server {

namespace {

// Keys that are one value of a labelled family in derper (its expvar LabelMaps).
struct LabelledFamily {
  std::string_view key_prefix;  // e.g. "packets_dropped_reason_"
  std::string_view family;      // Prometheus name without "derp_"
  std::string_view label;
};
constexpr std::array<LabelledFamily, 6> kLabelled = {{
    {"clients_refused_reason_", "clients_refused_reason", "reason"},
    {"packets_dropped_reason_", "packets_dropped_reason", "reason"},
    {"packets_dropped_kind_", "packets_dropped_kind", "kind"},
    {"packets_received_kind_", "packets_received_kind", "kind"},
    {"stun_requests_", "stun_requests", "disposition"},
    {"stun_addrfamily_", "stun_addrfamily", "family"},
}};

struct Family {
  bool gauge = false;
  std::vector<std::pair<std::string, int64_t>> samples;  // label value ("" = none), value
};

// Prometheus metric names allow [a-zA-Z0-9_:]; our keys already comply, anything else is
// mapped to '_' so one odd key cannot make the whole scrape unparseable.
std::string metric_name(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == ':';
    if (!ok) c = '_';
  }
  return out;
}

std::string label_value(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

CounterMap snapshot_counters(const Stats& stats, const Relay& relay) {
  CounterMap out;
  stats.fill(out);
  relay.fill_gauges(out);
  return out;
}

std::string render_prometheus(const CounterMap& counters) {
  // family name -> (type, samples); std::map keeps the output sorted and each TYPE line single.
  std::map<std::string, Family> families;
  std::map<std::string, std::string_view> labels;  // family -> label name
  for (const auto& [key, value] : counters) {
    std::string_view k = key;
    const LabelledFamily* lf = nullptr;
    for (const auto& f : kLabelled) {
      if (k.size() > f.key_prefix.size() && k.substr(0, f.key_prefix.size()) == f.key_prefix) {
        lf = &f;
        break;
      }
    }
    if (lf) {
      const std::string name = "derp_" + std::string(lf->family);
      families[name].samples.emplace_back(std::string(k.substr(lf->key_prefix.size())), value);
      labels[name] = lf->label;
      continue;
    }
    bool gauge = false;
    if (k.starts_with("gauge_")) {
      gauge = true;
      k.remove_prefix(6);
    } else if (k.starts_with("counter_")) {
      k.remove_prefix(8);
    }
    auto& fam = families["derp_" + metric_name(k)];
    fam.gauge = gauge;
    fam.samples.emplace_back("", value);
  }

  std::string out;
  for (const auto& [name, fam] : families) {
    out += fmt::format("# TYPE {} {}\n", name, fam.gauge ? "gauge" : "counter");
    auto label = labels.find(name);
    for (const auto& [lv, value] : fam.samples) {
      if (label == labels.end()) {
        out += fmt::format("{} {}\n", name, value);
      } else {
        out += fmt::format("{}{{{}=\"{}\"}} {}\n", name, label->second, label_value(lv), value);
      }
    }
  }
  return out;
}

std::string render_expvar_json(const CounterMap& counters) {
  nlohmann::json derp = nlohmann::json::object();
  nlohmann::json requests = nlohmann::json::object();
  nlohmann::json family = nlohmann::json::object();
  for (const auto& [key, value] : counters) {
    std::string_view k = key;
    if (k.starts_with("stun_requests_")) {
      requests[std::string(k.substr(14))] = value;
    } else if (k.starts_with("stun_addrfamily_")) {
      family[std::string(k.substr(16))] = value;
    } else {
      derp[key] = value;
    }
  }
  nlohmann::json root = {
      {"derp", std::move(derp)},
      {"stun",
       {{"counter_requests", std::move(requests)}, {"counter_addrfamily", std::move(family)}}},
  };
  return root.dump(1) + "\n";
}

}  // namespace derp::server
