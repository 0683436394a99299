// The netcheck probe plan (PROTOCOL.md §9.3): which node gets a STUN request, over which
// family, when. Pure: the STUN client in netcheck.cc executes the plan.
#include <algorithm>
#include <functional>
#include <limits>

#include "derp/netcheck.h"

namespace derp::probe {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kFullRetry{100};  // Go's defaultInitialRetransmitTime
constexpr milliseconds kMinIncrementalRetry{200};
constexpr int kIncrementalRegions = 3;

bool can_stun(const DERPNode& node, IpFamily family) {
  return node_stun_target(node, family).kind != DialTarget::Kind::kSkip;
}

void add_tries(const DERPRegion& region, IpFamily family, int tries,
               const std::function<milliseconds(int)>& delay, std::vector<StunProbe>& out) {
  if (region.nodes.empty()) return;
  for (int t = 0; t < tries; ++t) {
    const size_t idx = static_cast<size_t>(t) % region.nodes.size();
    if (!can_stun(region.nodes[idx], family)) continue;
    out.push_back({region.region_id, idx, family, delay(t)});
  }
}

}  // namespace

std::vector<StunProbe> make_probe_plan(const DERPMap& map, const PlanInput& in) {
  std::vector<StunProbe> out;
  if (in.full || in.last_latency_ms.empty()) {
    for (const auto& [id, region] : map.regions) {
      if (region.no_measure_no_home) continue;
      auto delay = [](int t) { return kFullRetry * t; };
      if (in.have_v4) add_tries(region, IpFamily::kV4, 3, delay, out);
      if (in.have_v6) add_tries(region, IpFamily::kV6, 3, delay, out);
    }
  } else {
    // Regions by last latency, unmeasured last; Avoid only when it is the current home.
    std::vector<const DERPRegion*> order;
    for (const auto& [id, region] : map.regions) {
      if (region.no_measure_no_home) continue;
      if (region.avoid && id != in.current_home) continue;
      order.push_back(&region);
    }
    auto last = [&](int id) {
      auto it = in.last_latency_ms.find(id);
      return it == in.last_latency_ms.end() ? std::numeric_limits<double>::infinity()
                                            : it->second;
    };
    std::stable_sort(order.begin(), order.end(), [&](const DERPRegion* a, const DERPRegion* b) {
      return last(a->region_id) < last(b->region_id);
    });
    const bool dual = in.have_v4 && in.have_v6;
    for (size_t rank = 0; rank < order.size(); ++rank) {
      const DERPRegion& region = *order[rank];
      const bool home = region.region_id == in.current_home;
      if (static_cast<int>(rank) >= kIncrementalRegions && !home) continue;
      int tries = rank < 2 ? 2 : 1;
      if (home) tries = 4;
      bool do4 = in.have_v4, do6 = in.have_v6;
      if (rank >= 2 && !home && dual) {  // slower regions alternate families
        do4 = rank % 2 == 0;
        do6 = !do4;
      }
      const double lat = last(region.region_id);
      milliseconds base = kMinIncrementalRetry;
      if (lat != std::numeric_limits<double>::infinity()) {
        base = std::max(base, milliseconds(static_cast<int64_t>(lat * 1.2)));
      }
      auto delay = [base](int t) {
        milliseconds d = base * t;
        if (t > 1) d += milliseconds(50) * t;
        return d;
      };
      if (do4) add_tries(region, IpFamily::kV4, tries, delay, out);
      if (do6) add_tries(region, IpFamily::kV6, tries, delay, out);
    }
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const StunProbe& a, const StunProbe& b) { return a.delay < b.delay; });
  return out;
}

}  // namespace derp::probe
