// Choosing the home (preferred) DERP region, with Go's hysteresis. PROTOCOL.md §9.6.
#include <fmt/format.h>

#include <cmath>

#include "derp/netcheck.h"

namespace derp::probe {
namespace {

constexpr double kAbsoluteDiffMs = 10;  // Go's preferredDERPAbsoluteDiff

double score_of(const DERPMap& map, int region) {
  if (!map.home_params) return 1;
  auto it = map.home_params->region_score.find(region);
  if (it == map.home_params->region_score.end() || it->second <= 0) return 1;
  return it->second;
}

bool can_be_home(const DERPMap& map, int region) {
  auto it = map.regions.find(region);
  return it != map.regions.end() && !it->second.no_measure_no_home;
}

}  // namespace

HomeChoice choose_home(const DERPMap& map, const std::map<int, double>& current,
                       const std::vector<std::map<int, double>>& recent, int old_home) {
  HomeChoice c;
  c.old_home = old_home;
  // Best recent latency per region, over this and the kept reports, scaled by RegionScore.
  std::map<int, double> best;
  auto take = [&](const std::map<int, double>& lat) {
    for (const auto& [region, ms] : lat) {
      const double scaled = ms * score_of(map, region);
      auto it = best.find(region);
      if (it == best.end() || scaled < it->second) best[region] = scaled;
    }
  };
  for (const auto& r : recent) take(r);
  take(current);
  for (const auto& [region, ms] : current) {
    if (!can_be_home(map, region)) continue;
    c.scaled_ms[region] = best[region];
    if (c.candidate == 0 || best[region] < c.candidate_ms) {
      c.candidate = region;
      c.candidate_ms = best[region];
    }
  }
  if (auto it = current.find(old_home); old_home != 0 && it != current.end()) {
    c.old_home_ms = it->second * score_of(map, old_home);
  }
  c.preferred = c.candidate;
  if (c.candidate == 0) {
    c.reason = "no region answered";
    return c;
  }
  if (old_home != 0 && c.candidate != old_home && c.old_home_ms >= 0) {
    const bool small_gain = c.old_home_ms - c.candidate_ms < kAbsoluteDiffMs;
    const bool not_a_third = c.candidate_ms > c.old_home_ms * 2 / 3;
    if (small_gain || not_a_third) {
      c.preferred = old_home;
      c.kept_old_home = true;
      c.reason = fmt::format(
          "kept previous home {} ({:.1f} ms): region {} ({:.1f} ms) is faster, but {}", old_home,
          c.old_home_ms, c.candidate, c.candidate_ms,
          small_gain ? fmt::format("by less than {:.0f} ms", kAbsoluteDiffMs)
                     : std::string("not by a third or more"));
      return c;
    }
    c.reason = fmt::format(
        "region {} ({:.1f} ms) replaces previous home {} ({:.1f} ms): faster by {:.1f} ms and "
        "by more than a third",
        c.candidate, c.candidate_ms, old_home, c.old_home_ms, c.old_home_ms - c.candidate_ms);
    return c;
  }
  if (old_home != 0 && c.candidate != old_home) {
    c.reason = fmt::format("region {} has the lowest latency ({:.1f} ms); previous home {} did "
                           "not answer",
                           c.candidate, c.candidate_ms, old_home);
  } else {
    c.reason = fmt::format("region {} has the lowest latency ({:.1f} ms)", c.candidate,
                           c.candidate_ms);
  }
  return c;
}

std::map<int, double> Report::region_latency() const {
  std::map<int, double> out;
  for (const auto& [id, r] : regions) {
    if (r.latency_ms) out[id] = *r.latency_ms;
  }
  return out;
}

}  // namespace derp::probe
