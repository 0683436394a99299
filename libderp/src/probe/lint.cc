// The DERP map linter: one finding per mistake, each a line. PROTOCOL.md §8.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <future>
#include <set>

#include "derp/derp_map_lint.h"

namespace derp::probe {
namespace {

std::string node_where(const DERPRegion& r, const DERPNode& n, size_t i) {
  if (n.name.empty()) return fmt::format("region {} node #{}", r.region_id, i);
  return fmt::format("region {} node {}", r.region_id, n.name);
}

bool is_hex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// A DNS name as a certificate could hold it: labels of [A-Za-z0-9-], optional leading "*.".
bool is_dns_name(std::string_view s) {
  if (s.rfind("*.", 0) == 0) s.remove_prefix(2);
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

// "", "none" (or any non-IP: Go treats it as "no such family") or an IP of the right family.
void check_family_field(const std::string& where, const char* field, const std::string& value,
                        IpFamily family, std::vector<LintFinding>& out) {
  if (value.empty()) return;
  auto f = ip_literal_family(value);
  if (!f) {
    if (value != "none") {
      out.push_back({where, "bad-address",
                     fmt::format("{} \"{}\" is not an IP address (use \"none\" to disable the "
                                 "family)",
                                 field, value)});
    }
    return;
  }
  if (*f != family) {
    out.push_back({where, "wrong-family",
                   fmt::format("{} \"{}\" is an {} address", field, value,
                               *f == IpFamily::kV4 ? "IPv4" : "IPv6")});
  }
}

}  // namespace

std::string LintFinding::line() const { return fmt::format("{}: {}: {}", where, code, message); }

std::vector<LintFinding> lint_derp_map(const DERPMap& map) {
  std::vector<LintFinding> out;
  if (map.regions.empty()) out.push_back({"map", "no-regions", "the map has no regions"});
  std::map<std::string, std::string> names;  // node name → where first seen
  for (const auto& [key, r] : map.regions) {
    const std::string rw = fmt::format("region {}", key);
    if (r.region_id != key && map.regions.count(r.region_id)) {
      out.push_back(
          {rw, "duplicate-region-id",
           fmt::format("RegionID {} is also the id of region {}", r.region_id, r.region_id)});
    } else if (r.region_id != key) {
      out.push_back({rw, "region-id-mismatch",
                     fmt::format("key {} holds RegionID {}", key, r.region_id)});
    }
    if (r.nodes.empty()) out.push_back({rw, "no-nodes", "the region has no nodes"});
    bool any_derp = false, v4_none = false, v4_some = false, v6_none = false, v6_some = false;
    for (size_t i = 0; i < r.nodes.size(); ++i) {
      const DERPNode& n = r.nodes[i];
      const std::string w = node_where(r, n, i);
      if (n.name.empty()) {
        out.push_back({w, "no-name", "node has no Name"});
      } else if (auto [it, fresh] = names.emplace(n.name, w); !fresh) {
        out.push_back({w, "duplicate-node-name",
                       fmt::format("Name \"{}\" already used by {}", n.name, it->second)});
      }
      if (n.region_id != r.region_id) {
        out.push_back({w, "node-region-mismatch",
                       fmt::format("node RegionID {} in region {}", n.region_id, r.region_id)});
      }
      if (n.host_name.empty()) out.push_back({w, "no-hostname", "node has no HostName"});
      if (!n.stun_only) any_derp = true;
      check_family_field(w, "IPv4", n.ipv4, IpFamily::kV4, out);
      check_family_field(w, "IPv6", n.ipv6, IpFamily::kV6, out);
      const bool v4 = node_dial_target(n, IpFamily::kV4).kind != DialTarget::Kind::kSkip;
      const bool v6 = node_dial_target(n, IpFamily::kV6).kind != DialTarget::Kind::kSkip;
      if (!n.host_name.empty() && !v4 && !v6) {
        out.push_back({w, "no-address", "neither IPv4 nor IPv6 can be dialed"});
      }
      (n.ipv4 == "none" ? v4_none : v4_some) = true;
      (n.ipv6 == "none" ? v6_none : v6_some) = true;
      if (!n.cert_name.empty()) {
        if (n.cert_name.rfind("sha256-raw:", 0) == 0) {
          if (!is_hex64(std::string_view(n.cert_name).substr(11))) {
            out.push_back({w, "bad-certname", "sha256-raw: needs 64 hex digits"});
          }
        } else if (!is_dns_name(n.cert_name) && !is_ip_literal(n.cert_name)) {
          out.push_back({w, "bad-certname",
                         fmt::format("CertName \"{}\" is neither a DNS name, an IP nor "
                                     "sha256-raw:<hex>",
                                     n.cert_name)});
        }
      }
      if (n.derp_port < 0 || n.derp_port > 65535) {
        out.push_back({w, "bad-port", fmt::format("DERPPort {} out of range", n.derp_port)});
      }
      if (n.stun_port > 65535 || n.stun_port < -1) {
        out.push_back({w, "bad-port", fmt::format("STUNPort {} out of range", n.stun_port)});
      }
      if (n.stun_only && !node_stun_port(n)) {
        out.push_back({w, "stun-only-without-stun", "STUNOnly node with STUN disabled"});
      }
      if (!n.stun_test_ip.empty() && !is_ip_literal(n.stun_test_ip)) {
        out.push_back({w, "bad-address",
                       fmt::format("STUNTestIP \"{}\" is not an IP address", n.stun_test_ip)});
      }
    }
    if (!r.nodes.empty() && !any_derp) {
      out.push_back({rw, "stun-only-region",
                     "every node is STUNOnly: clients can measure it but never connect"});
    }
    if (v4_none && v4_some) {
      out.push_back({rw, "inconsistent-ipv4", "some nodes disable IPv4 (\"none\"), others not"});
    }
    if (v6_none && v6_some) {
      out.push_back({rw, "inconsistent-ipv6", "some nodes disable IPv6 (\"none\"), others not"});
    }
  }
  if (map.home_params) {
    for (const auto& [id, score] : map.home_params->region_score) {
      if (!map.regions.count(id)) {
        out.push_back({"HomeParams", "unknown-region-score",
                       fmt::format("RegionScore for region {} which is not in the map", id)});
      }
      if (score <= 0) {
        out.push_back({"HomeParams", "ignored-region-score",
                       fmt::format("RegionScore {} for region {} is ≤ 0 and ignored", score, id)});
      }
    }
  }
  return out;
}

namespace {

// A TCP connect with a deadline: "" on success, else why not.
std::string try_connect(const std::string& host, int port, IpFamily family,
                        std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = family == IpFamily::kV4 ? AF_INET : AF_INET6;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port_text = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), port_text.c_str(), &hints, &res); rc != 0) {
    return fmt::format("cannot resolve {}: {}", host, gai_strerror(rc));
  }
  std::string why = "no address";
  for (addrinfo* a = res; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK, 0);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (rc == 0) {
        why = "connect timed out";
        ::close(fd);
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      rc = err == 0 ? 0 : -1;
      errno = err;
    }
    if (rc == 0) {
      ::close(fd);
      ::freeaddrinfo(res);
      return "";
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return why;
}

}  // namespace

std::vector<LintFinding> lint_derp_map_ports(const DERPMap& map,
                                             std::chrono::milliseconds timeout) {
  struct Job {
    std::string where;
    std::string target;
    int port;
    std::future<std::string> result;
  };
  std::vector<Job> jobs;
  for (const auto& [id, r] : map.regions) {
    for (size_t i = 0; i < r.nodes.size(); ++i) {
      const DERPNode& n = r.nodes[i];
      if (n.stun_only) continue;
      for (IpFamily f : {IpFamily::kV4, IpFamily::kV6}) {
        DialTarget t = node_dial_target(n, f);
        if (t.kind == DialTarget::Kind::kSkip) continue;
        const int port = node_derp_port(n);
        jobs.push_back({node_where(r, n, i), t.host, port,
                        std::async(std::launch::async, try_connect, t.host, port, f, timeout)});
      }
    }
  }
  std::vector<LintFinding> out;
  for (auto& j : jobs) {
    std::string why = j.result.get();
    if (why.empty()) continue;
    const bool v6 = j.target.find(':') != std::string::npos;
    out.push_back({j.where, "unreachable-port",
                   fmt::format("DERP port {}{}{}:{}: {}", v6 ? "[" : "", j.target, v6 ? "]" : "",
                               j.port, why)});
  }
  return out;
}

}  // namespace derp::probe
