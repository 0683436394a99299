// The prober's checks per node and per node pair, and their Prometheus text.
#include "derp/prober.h"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <future>
#include <mutex>
#include <span>

#include "derp/client.h"
#include "probe/stun_client.h"
#include "probe/tls_check.h"

namespace derp::probe {
namespace {

using Clock = std::chrono::steady_clock;

CheckResult make_check(std::string check, int region, std::string node) {
  CheckResult c;
  c.check = std::move(check);
  c.region_id = region;
  c.node = std::move(node);
  return c;
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// The derp::Client options that reach `node` as a region dial would (PROTOCOL.md §7.5):
// https://<address>:<DERPPort>/derp, certificate checked against CertName or HostName.
ClientOptions client_options(const DERPNode& node, const ProberOptions& o) {
  ClientOptions c;
  c.private_key = NodePrivate::generate();
  DialTarget t = node_dial_target(node, IpFamily::kV4);
  if (t.kind == DialTarget::Kind::kSkip) t = node_dial_target(node, IpFamily::kV6);
  const std::string host = t.kind == DialTarget::Kind::kSkip ? node.host_name : t.host;
  const bool v6 = ip_literal_family(host) == IpFamily::kV6;
  c.server_url = fmt::format("https://{}{}{}:{}/derp", v6 ? "[" : "", host, v6 ? "]" : "",
                             node_derp_port(node));
  c.insecure = node.insecure_for_tests;
  c.ca_file = o.ca_file;
  if (!node.cert_name.empty()) {
    c.cert_name = node.cert_name;
  } else if (host != node.host_name) {
    c.cert_name = node.host_name;
  }
  c.is_prober = true;
  c.connect_timeout = o.timeout;
  c.write_timeout = o.timeout;
  return c;
}

CheckResult tls_check(const DERPRegion& r, const DERPNode& n, const ProberOptions& o) {
  CheckResult c = make_check("tls", r.region_id, n.name);
  TlsCheck t = check_node_tls(n, o.timeout, o.ca_file);
  c.latency_ms = t.latency_ms;
  c.cert_expiry_seconds = t.expiry_seconds;
  if (!t.handshake_ok) {
    c.detail = t.error;
    return c;
  }
  const double days = t.expiry_seconds.value_or(0) / 86400.0;
  if (t.expiry_seconds && *t.expiry_seconds < 0) {
    c.detail = fmt::format("certificate expired {:.1f} days ago ({})", -days, t.not_after);
  } else if (days < o.cert_warn_days) {
    c.detail = fmt::format("certificate expires in {:.1f} days ({}), under {} days", days,
                           t.not_after, o.cert_warn_days);
  } else {
    c.ok = true;
    c.detail = fmt::format("certificate expires in {:.0f} days", days);
  }
  return c;
}

CheckResult stun_check(const DERPMap& map, const DERPRegion& r, size_t idx, IpFamily f,
                       const ProberOptions& o) {
  CheckResult c = make_check(f == IpFamily::kV4 ? "stun4" : "stun6", r.region_id, r.nodes[idx].name);
  std::vector<StunProbe> plan;
  for (int t = 0; t < 3; ++t) plan.push_back({r.region_id, idx, f, std::chrono::milliseconds(100 * t)});
  StunRunOptions so;
  so.timeout = o.timeout;
  so.stop_early = false;
  StunRunResult res = run_stun_plan(map, plan, so);
  if (res.replies.empty()) {
    c.detail = res.errors.empty() ? "no STUN reply" : res.errors.front();
    return c;
  }
  c.ok = true;
  c.latency_ms = res.replies.front().latency_ms;
  c.detail = "mapped " + res.replies.front().mapped.to_string();
  return c;
}

CheckResult derp_check(const DERPRegion& r, const DERPNode& n, const ProberOptions& o) {
  CheckResult c = make_check("derp", r.region_id, n.name);
  auto client = Client::create(client_options(n, o));
  if (!client) {
    c.detail = client.error().message;
    return c;
  }
  if (auto ok = (*client)->connect(); !ok) {
    c.detail = ok.error().message;
    return c;
  }
  auto rtt = (*client)->ping(o.timeout);
  if (!rtt) {
    c.detail = rtt.error().message;
    return c;
  }
  c.ok = true;
  c.latency_ms = static_cast<double>(rtt->count()) / 1e6;
  return c;
}

// Two connected clients: `from` on node a, `to` on node b.
struct ClientPair {
  std::unique_ptr<Client> from, to;
};

Result<ClientPair> connect_pair(const DERPNode& a, const DERPNode& b, const ProberOptions& o,
                                bool is_prober) {
  ClientOptions oa = client_options(a, o), ob = client_options(b, o);
  oa.is_prober = ob.is_prober = is_prober;
  auto from = Client::create(std::move(oa));
  if (!from) return std::move(from).error();
  auto to = Client::create(std::move(ob));
  if (!to) return std::move(to).error();
  for (Client* cl : {to->get(), from->get()}) {
    if (auto ok = cl->connect(); !ok) return std::move(ok).error();
  }
  return ClientPair{std::move(*from), std::move(*to)};
}

// Sends `payload` from p.from to p.to until a copy arrives or `deadline` passes: the receiver
// must be registered at a's node first, which a mesh peer learns of asynchronously. Returns the
// time from the last send to the arrival, in ms.
Result<double> deliver(ClientPair& p, std::span<const uint8_t> payload, const DERPNode& a,
                       const DERPNode& b, Clock::time_point deadline,
                       std::chrono::milliseconds timeout) {
  while (Clock::now() < deadline) {
    const auto t0 = Clock::now();
    if (auto ok = p.from->send(p.to->self_public_key(), payload); !ok) {
      return std::move(ok).error();
    }
    const auto wait_until = std::min(deadline, Clock::now() + std::chrono::milliseconds(500));
    while (Clock::now() < wait_until) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(wait_until - Clock::now());
      auto m = p.to->recv(std::max(left, std::chrono::milliseconds(1)));
      if (!m) {
        if (m.error().kind == ErrorKind::kTimeout) break;
        return std::move(m).error();
      }
      auto* pkt = std::get_if<ReceivedPacket>(&*m);
      if (pkt && std::equal(pkt->data.begin(), pkt->data.end(), payload.begin(), payload.end())) {
        return ms_since(t0);
      }
    }
  }
  return Error(ErrorKind::kTimeout, fmt::format("no packet from {} arrived at {} within {} ms",
                                                a.name, b.name, timeout.count()));
}

std::vector<uint8_t> probe_tag(const std::string& what, const std::string& pair) {
  const std::string tag =
      fmt::format("derp-probe {} {} {}", what, pair, Clock::now().time_since_epoch().count());
  return std::vector<uint8_t>(tag.begin(), tag.end());
}

// A packet from a client on node a to a client on node b (mesh forwarding when a ≠ b).
CheckResult sendrecv_check(const DERPRegion& r, const DERPNode& a, const DERPNode& b,
                           const ProberOptions& o) {
  CheckResult c = make_check("sendrecv", r.region_id, a.name + "->" + b.name);
  auto pair = connect_pair(a, b, o, true);
  if (!pair) {
    c.detail = pair.error().message;
    return c;
  }
  const std::vector<uint8_t> payload = probe_tag("sendrecv", c.node);
  auto ms = deliver(*pair, payload, a, b, Clock::now() + o.timeout, o.timeout);
  if (!ms) {
    c.detail = ms.error().message;
    return c;
  }
  c.ok = true;
  c.latency_ms = *ms;
  return c;
}

// o.bw_size random bytes from a client on node a to a client on node b in packets of up to
// 64 KiB, kBandwidthWindow in flight; timed from the first data packet sent to the last one
// received. Go's derpProbeBandwidth (direct mode): packets must arrive whole and in order.
CheckResult bw_check(const DERPRegion& r, const DERPNode& a, const DERPNode& b,
                     const ProberOptions& o) {
  CheckResult c = make_check("bw", r.region_id, a.name + "->" + b.name);
  c.bw_bytes = o.bw_size;
  // Not a prober client, as in Go: the relay need not log every packet of the transfer.
  auto pair = connect_pair(a, b, o, false);
  if (!pair) {
    c.detail = pair.error().message;
    return c;
  }
  const std::vector<uint8_t> tag = probe_tag("bw", c.node);
  if (auto ms = deliver(*pair, tag, a, b, Clock::now() + o.timeout, o.timeout); !ms) {
    c.detail = ms.error().message;
    return c;
  }
  if (sodium_init() < 0) {
    c.detail = "libsodium init failed";
    return c;
  }
  const size_t total = static_cast<size_t>(o.bw_size);
  std::vector<uint8_t> data(total);
  randombytes_buf(data.data(), data.size());
  const size_t count = (total + kMaxPacketSize - 1) / kMaxPacketSize;
  auto packet = [&](size_t i) {
    const size_t off = i * kMaxPacketSize;
    return std::span<const uint8_t>(data).subspan(off, std::min(kMaxPacketSize, total - off));
  };
  const NodePublic dst = pair->to->self_public_key();
  const NodePublic src = pair->from->self_public_key();
  size_t sent = 0, got = 0;
  const auto t0 = Clock::now();
  const auto deadline = t0 + o.timeout;
  auto fail = [&](const std::string& why) {
    c.detail = fmt::format("{} -> {}: after {} of {} packets: {}", a.name, b.name, got, count, why);
    return c;
  };
  while (got < count) {
    while (sent < count && sent - got < static_cast<size_t>(kBandwidthWindow)) {
      if (auto ok = pair->from->send(dst, packet(sent)); !ok) {
        return fail("sending: " + ok.error().message);
      }
      ++sent;
    }
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return fail(fmt::format("the transfer did not finish within {} ms", o.timeout.count()));
    }
    auto m = pair->to->recv(left);
    if (!m) {
      if (m.error().kind == ErrorKind::kTimeout) {
        return fail(fmt::format("the transfer did not finish within {} ms", o.timeout.count()));
      }
      return fail("receiving: " + m.error().message);
    }
    auto* p = std::get_if<ReceivedPacket>(&*m);
    if (!p) continue;              // keep-alives, pings, peer notices
    if (p->data == tag) continue;  // a late copy of the route check
    if (p->src != src) return fail("a packet from an unexpected source");
    const auto want = packet(got);
    if (!std::equal(p->data.begin(), p->data.end(), want.begin(), want.end())) {
      return fail("a packet arrived reordered or corrupted");
    }
    ++got;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  c.ok = true;
  c.bw_seconds = secs;
  c.latency_ms = secs * 1000;
  c.detail = fmt::format("{} bytes in {:.1f} ms, {:.1f} Mbit/s", total, c.latency_ms, *c.bw_mbps());
  return c;
}

}  // namespace

std::string CheckResult::name() const { return fmt::format("{}/{}/{}", check, region_id, node); }

std::optional<double> CheckResult::bw_mbps() const {
  if (!bw_bytes || !bw_seconds || *bw_seconds <= 0) return std::nullopt;
  return static_cast<double>(*bw_bytes) * 8 / *bw_seconds / 1e6;
}

std::vector<CheckResult> run_prober_checks(const DERPMap& map, const ProberOptions& o) {
  auto stun_families = [](const DERPNode& n) {
    std::vector<IpFamily> out;
    for (IpFamily f : {IpFamily::kV4, IpFamily::kV6}) {
      if (node_stun_target(n, f).kind != DialTarget::Kind::kSkip) out.push_back(f);
    }
    return out;
  };
  auto pairs = [](const DERPRegion& r) {
    size_t n = 0;
    for (const auto& node : r.nodes) n += node.stun_only ? 0 : 1;
    return n * n;
  };
  // The round's size up front, so that progress can say "n of N".
  size_t total = 0;
  for (const auto& [id, r] : map.regions) {
    for (const auto& n : r.nodes) {
      total += (o.tls && !n.stun_only) + (o.derp && !n.stun_only);
      total += o.stun ? stun_families(n).size() : 0;
    }
    total += (o.mesh ? pairs(r) : 0) + (o.bw_size > 0 ? pairs(r) : 0);
  }
  std::mutex progress_mu;
  size_t done = 0;
  auto ended = [&](CheckResult c) {
    if (o.progress) {
      std::lock_guard lk(progress_mu);
      o.progress(++done, total, c);
    }
    return c;
  };

  std::vector<std::future<std::vector<CheckResult>>> jobs;
  for (const auto& [id, r] : map.regions) {
    for (size_t i = 0; i < r.nodes.size(); ++i) {
      jobs.push_back(std::async(std::launch::async, [&, &r = r, i] {
        std::vector<CheckResult> out;
        const DERPNode& n = r.nodes[i];
        if (o.tls && !n.stun_only) out.push_back(ended(tls_check(r, n, o)));
        if (o.stun) {
          for (IpFamily f : stun_families(n)) out.push_back(ended(stun_check(map, r, i, f, o)));
        }
        if (o.derp && !n.stun_only) out.push_back(ended(derp_check(r, n, o)));
        return out;
      }));
    }
    if (!o.mesh) continue;
    for (const auto& a : r.nodes) {
      for (const auto& b : r.nodes) {
        if (a.stun_only || b.stun_only) continue;
        jobs.push_back(std::async(std::launch::async, [&, &r = r] {
          return std::vector<CheckResult>{ended(sendrecv_check(r, a, b, o))};
        }));
      }
    }
  }
  std::vector<CheckResult> out;
  for (auto& j : jobs) {
    auto v = j.get();
    out.insert(out.end(), v.begin(), v.end());
  }
  // Bandwidth last and one pair at a time, so that transfers measure the relay rather than
  // each other or the latency checks.
  if (o.bw_size > 0) {
    for (const auto& [id, r] : map.regions) {
      for (const auto& a : r.nodes) {
        for (const auto& b : r.nodes) {
          if (a.stun_only || b.stun_only) continue;
          out.push_back(ended(bw_check(r, a, b, o)));
        }
      }
    }
  }
  return out;
}

std::string prober_metrics_text(const std::vector<CheckResult>& results, uint64_t runs) {
  auto labels = [](const CheckResult& c) {
    return fmt::format("check=\"{}\",region=\"{}\",node=\"{}\"", c.check, c.region_id, c.node);
  };
  std::string out;
  out += "# HELP derp_probe_runs_total Completed probe rounds.\n";
  out += "# TYPE derp_probe_runs_total counter\n";
  out += fmt::format("derp_probe_runs_total {}\n", runs);
  out += "# HELP derp_probe_check_success 1 when the check passed in the last round.\n";
  out += "# TYPE derp_probe_check_success gauge\n";
  for (const auto& c : results) {
    out += fmt::format("derp_probe_check_success{{{}}} {}\n", labels(c), c.ok ? 1 : 0);
  }
  out += "# HELP derp_probe_check_latency_seconds Duration of the check's measured step.\n";
  out += "# TYPE derp_probe_check_latency_seconds gauge\n";
  for (const auto& c : results) {
    if (!c.ok) continue;
    out += fmt::format("derp_probe_check_latency_seconds{{{}}} {:.6f}\n", labels(c),
                       c.latency_ms / 1000.0);
  }
  bool any_bw = false;
  for (const auto& c : results) any_bw |= c.bw_bytes.has_value();
  if (any_bw) {
    auto bw_labels = [](const CheckResult& c) {
      return fmt::format("region=\"{}\",node=\"{}\"", c.region_id, c.node);
    };
    out += "# HELP derp_probe_bw_size_bytes Payload size of the bandwidth probe.\n";
    out += "# TYPE derp_probe_bw_size_bytes gauge\n";
    for (const auto& c : results) {
      if (!c.bw_bytes) continue;
      out += fmt::format("derp_probe_bw_size_bytes{{{}}} {}\n", bw_labels(c), *c.bw_bytes);
    }
    out += "# HELP derp_probe_bw_transfer_seconds Time the last complete transfer took.\n";
    out += "# TYPE derp_probe_bw_transfer_seconds gauge\n";
    for (const auto& c : results) {
      if (!c.bw_seconds) continue;
      out +=
          fmt::format("derp_probe_bw_transfer_seconds{{{}}} {:.6f}\n", bw_labels(c), *c.bw_seconds);
    }
    out += "# HELP derp_probe_bw_mbps Throughput of the last complete transfer, Mbit/s.\n";
    out += "# TYPE derp_probe_bw_mbps gauge\n";
    for (const auto& c : results) {
      if (auto mbps = c.bw_mbps()) {
        out += fmt::format("derp_probe_bw_mbps{{{}}} {:.3f}\n", bw_labels(c), *mbps);
      }
    }
  }
  out += "# HELP derp_probe_cert_expiry_seconds Seconds until the node's certificate expires.\n";
  out += "# TYPE derp_probe_cert_expiry_seconds gauge\n";
  for (const auto& c : results) {
    if (!c.cert_expiry_seconds) continue;
    out += fmt::format("derp_probe_cert_expiry_seconds{{region=\"{}\",node=\"{}\"}} {:.0f}\n",
                       c.region_id, c.node, *c.cert_expiry_seconds);
  }
  return out;
}

}  // namespace derp::probe
