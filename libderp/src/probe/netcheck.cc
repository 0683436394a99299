// One netcheck report: the STUN plan, the HTTPS fallback, captive-portal check, home region.
// PROTOCOL.md §9.3–9.6, §10.
#include <fmt/format.h>

#include <future>

#include "derp/netcheck.h"
#include "probe/http_get.h"
#include "probe/stun_client.h"

namespace derp::probe {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kMaxReportAge = std::chrono::seconds(5 * 60 + 5);

bool measurable_by_https(const DERPRegion& r) {
  if (r.avoid || r.no_measure_no_home) return false;
  for (const auto& n : r.nodes) {
    if (!n.stun_only) return true;
  }
  return false;
}

struct HttpsLatency {
  std::optional<double> ms;
  std::optional<IpFamily> family;
  std::string node;
  std::string error;
};

// GET https://<HostName>:<DERPPort>/derp/latency-check over the node's address, nodes in order
// (PROTOCOL.md §9.4). Latency = the request alone, TCP/TLS setup excluded.
HttpsLatency https_latency(const DERPRegion& region, std::chrono::milliseconds timeout,
                           const std::string& ca_file) {
  HttpsLatency out;
  for (const auto& n : region.nodes) {
    if (n.stun_only) continue;
    for (IpFamily f : {IpFamily::kV4, IpFamily::kV6}) {
      DialTarget t = node_dial_target(n, f);
      if (t.kind == DialTarget::Kind::kSkip) continue;
      const int port = node_derp_port(n);
      const bool host_v6 = ip_literal_family(n.host_name) == IpFamily::kV6;
      const std::string host = host_v6 ? "[" + n.host_name + "]" : n.host_name;
      HttpGet req;
      req.url = fmt::format("https://{}:{}/derp/latency-check", host, port);
      if (t.kind == DialTarget::Kind::kDialIp && t.host != n.host_name) {
        const bool v6 = f == IpFamily::kV6;
        req.resolve = fmt::format("{}:{}:{}{}{}", n.host_name, port, v6 ? "[" : "", t.host,
                                  v6 ? "]" : "");
      }
      req.timeout = timeout;
      req.insecure = n.insecure_for_tests;
      req.ca_file = ca_file;
      req.max_body = 8192;
      auto resp = http_get(req);
      if (!resp) {
        out.error = fmt::format("node {}: {}", n.name, resp.error().message);
        continue;
      }
      if (resp->status > 299) {
        out.error = fmt::format("node {}: {} answered HTTP {}", n.name, req.url, resp->status);
        continue;
      }
      out.ms = resp->request_ms;
      out.family = resp->primary_ip.find(':') != std::string::npos ? IpFamily::kV6 : IpFamily::kV4;
      out.node = n.name;
      out.error.clear();
      return out;
    }
  }
  if (out.error.empty()) out.error = "no node to connect to";
  return out;
}

void set_min(std::optional<double>& slot, double v) {
  if (!slot || v < *slot) slot = v;
}

}  // namespace

Result<Report> run_netcheck(const DERPMap& map, const NetcheckOptions& o) {
  const auto start = Clock::now();
  Report rep;
  rep.now = std::chrono::system_clock::now();
  rep.os_has_ipv6 = os_has_ipv6();

  const Report* prev = o.previous;
  const bool prev_recent = prev && rep.now - prev->now < kMaxReportAge;
  PlanInput in;
  in.full = o.full || !prev;
  in.have_v4 = o.ipv4;
  in.have_v6 = o.ipv6 && rep.os_has_ipv6;
  if (prev) {
    in.current_home = prev->preferred_derp;
    in.last_latency_ms = prev->region_latency();
  }
  std::vector<StunProbe> plan = make_probe_plan(map, in);
  bool any_measurable = false;
  for (const auto& [id, r] : map.regions) any_measurable |= !r.no_measure_no_home;
  if (!any_measurable) {
    return Error(ErrorKind::kUsage, "netcheck: the DERP map has no region to measure");
  }
  for (const auto& p : plan) rep.regions[p.region_id];  // attempted regions appear as rows

  StunRunOptions so;
  so.timeout = std::min(o.stun_timeout, o.timeout);
  so.full = in.full;
  so.on_reply = [&](const StunReply& r) {
    if (!o.progress) return;
    const auto& n = map.regions.at(r.region_id).nodes.at(r.node_index);
    o.progress({r.region_id, fmt::format("stun {} {:.1f}ms from {}",
                                         r.family == IpFamily::kV4 ? "v4" : "v6", r.latency_ms,
                                         n.name)});
  };
  StunRunResult stun = run_stun_plan(map, plan, so);
  rep.ipv4_can_send = stun.v4_sent;
  rep.ipv6_can_send = stun.v6_sent;
  for (const auto& r : stun.replies) {
    RegionReport& rr = rep.regions[r.region_id];
    if (rr.node.empty()) rr.node = map.regions.at(r.region_id).nodes.at(r.node_index).name;
    rep.udp = true;
    const std::string mapped = r.mapped.to_string();
    if (r.family == IpFamily::kV4) {
      rep.ipv4 = true;
      set_min(rr.v4_ms, r.latency_ms);
      if (rep.global_v4.empty()) {
        rep.global_v4 = mapped;
      } else if (rep.global_v4 != mapped) {
        rep.mapping_varies_by_dest_ip = true;
      } else if (!rep.mapping_varies_by_dest_ip) {
        rep.mapping_varies_by_dest_ip = false;
      }
      ++rep.global_v4_counters[mapped];
    } else {
      rep.ipv6 = true;
      set_min(rr.v6_ms, r.latency_ms);
      rep.global_v6 = mapped;
      ++rep.global_v6_counters[mapped];
    }
    set_min(rr.latency_ms, r.latency_ms);
  }

  // HTTPS for every region UDP missed. Go measures HTTPS only when no UDP reply came at all;
  // we measure the others too (shown as https_ms) but, like Go, let HTTPS latency count for
  // RegionLatency only then.
  const auto left = [&] {
    auto l = std::chrono::duration_cast<std::chrono::milliseconds>(o.timeout -
                                                                   (Clock::now() - start));
    return std::max(l, std::chrono::milliseconds(1));
  };
  if (o.https_fallback) {
    std::map<int, std::future<HttpsLatency>> jobs;
    for (const auto& [id, r] : map.regions) {
      if (!measurable_by_https(r)) continue;
      auto it = rep.regions.find(id);
      if (it != rep.regions.end() && it->second.latency_ms) continue;
      jobs[id] = std::async(std::launch::async, https_latency, std::cref(r), left(),
                            o.ca_file);
    }
    for (auto& [id, job] : jobs) {
      HttpsLatency h = job.get();
      RegionReport& rr = rep.regions[id];
      if (!h.ms) {
        rr.https_error = h.error;
        if (o.progress) o.progress({id, "no answer: " + h.error});
        continue;
      }
      rr.https_ms = h.ms;
      if (rr.node.empty()) rr.node = h.node;
      if (o.progress) o.progress({id, fmt::format("https {:.1f}ms from {}", *h.ms, h.node)});
      if (!rep.udp) {
        set_min(rr.latency_ms, *h.ms);
        (h.family == IpFamily::kV6 ? rep.ipv6 : rep.ipv4) = true;
      }
    }
  }

  if (o.captive_check && in.full && !rep.udp) {
    auto urls = captive_endpoints(map, prev ? prev->preferred_derp : 0, o.captive_port);
    if (!urls.empty()) {
      auto results = check_captive(urls, std::min(left(), std::chrono::milliseconds(3000)));
      for (const auto& c : results) {
        if (c.verdict == CaptiveVerdict::kNoResult) continue;
        if (c.verdict != CaptiveVerdict::kNoPortal) {
          rep.captive_portal = true;
        } else if (!rep.captive_portal) {
          rep.captive_portal = false;
        }
      }
    }
  }

  std::vector<std::map<int, double>> recent;
  if (prev_recent) recent.push_back(prev->region_latency());
  rep.home = choose_home(map, rep.region_latency(), recent, prev ? prev->preferred_derp : 0);
  rep.preferred_derp = rep.home.preferred;
  return rep;
}

}  // namespace derp::probe
