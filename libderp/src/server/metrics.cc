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

// Where a counter-map key lives in derper's expvars. Most keys are in the "derp" set
// (Prometheus "derp_<name>"); a few are expvars of their own: "derp_websocket_accepts"
// (cmd/derper/websocket.go), the "stun" set (stun_requests{disposition}, stun_addrfamily
// {family}) and the "tls_listener" set of the rate-limited listener (tls_listener_*).
// Keys that are one value of a labelled family (derper's metrics.LabelMap) are listed here.
struct LabelledFamily {
  std::string_view key_prefix;  // e.g. "packets_dropped_reason_"
  std::string_view set;         // the expvar set: "derp" or "stun"
  std::string_view name;        // its name in the set, e.g. "counter_packets_dropped_reason"
  std::string_view label;
};
constexpr std::array<LabelledFamily, 6> kLabelled = {{
    {"clients_refused_reason_", "derp", "counter_clients_refused_reason", "reason"},  // ours
    {"packets_dropped_reason_", "derp", "counter_packets_dropped_reason", "reason"},
    {"packets_dropped_type_", "derp", "counter_packets_dropped_type", "type"},
    {"packets_received_kind_", "derp", "counter_packets_received_kind", "kind"},
    {"stun_requests_", "stun", "counter_requests", "disposition"},
    {"stun_addrfamily_", "stun", "counter_addrfamily", "family"},
}};

// Top-level expvars that are not in the "derp" set: key prefix -> (set, name within the set);
// an empty set means the key is a top-level expvar itself.
struct OwnVar {
  std::string_view key_prefix;
  std::string_view set;
  std::string_view name_prefix;
};
constexpr std::array<OwnVar, 2> kOwnVars = {{
    {"derp_websocket_accepts", "", ""},
    {"tls_listener_", "tls_listener", "counter_"},
}};

const LabelledFamily* labelled_family(std::string_view k) {
  for (const auto& f : kLabelled) {
    if (k.size() > f.key_prefix.size() && k.starts_with(f.key_prefix)) return &f;
  }
  return nullptr;
}

const OwnVar* own_var(std::string_view k) {
  for (const auto& v : kOwnVars) {
    if (k.starts_with(v.key_prefix)) return &v;
  }
  return nullptr;
}

// varz's naming: "<set>_" + the name without its gauge_/counter_ prefix, which sets the type.
std::string varz_name(std::string_view set, std::string_view name, bool* gauge) {
  *gauge = false;
  if (name.starts_with("gauge_")) {
    *gauge = true;
    name.remove_prefix(6);
  } else if (name.starts_with("counter_")) {
    name.remove_prefix(8);
  }
  return set.empty() ? std::string(name) : std::string(set) + "_" + std::string(name);
}

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
    bool gauge = false;
    if (const LabelledFamily* lf = labelled_family(k)) {
      const std::string name = metric_name(varz_name(lf->set, lf->name, &gauge));
      families[name].samples.emplace_back(std::string(k.substr(lf->key_prefix.size())), value);
      labels[name] = lf->label;
      continue;
    }
    std::string name;
    if (const OwnVar* v = own_var(k)) {
      const std::string in_set =
          std::string(v->name_prefix) + std::string(k.substr(v->set.empty() ? 0 : v->key_prefix.size()));
      name = varz_name(v->set, in_set, &gauge);
    } else {
      name = varz_name("derp", k, &gauge);
    }
    auto& fam = families[metric_name(name)];
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
  // derper's /debug/vars layout: {"derp": {...}, "stun": {...}, "tls_listener": {...},
  // "derp_websocket_accepts": n}, label maps as nested objects.
  nlohmann::json root = {{"derp", nlohmann::json::object()},
                         {"stun",
                          {{"counter_requests", nlohmann::json::object()},
                           {"counter_addrfamily", nlohmann::json::object()}}}};
  for (const auto& [key, value] : counters) {
    std::string_view k = key;
    if (const LabelledFamily* lf = labelled_family(k)) {
      root[std::string(lf->set)][std::string(lf->name)]
          [std::string(k.substr(lf->key_prefix.size()))] = value;
    } else if (const OwnVar* v = own_var(k)) {
      if (v->set.empty()) {
        root[key] = value;
      } else {
        root[std::string(v->set)][std::string(v->name_prefix) +
                                  std::string(k.substr(v->key_prefix.size()))] = value;
      }
    } else {
      root["derp"][key] = value;
    }
  }
  return root.dump(1) + "\n";
}

}  // namespace derp::server
