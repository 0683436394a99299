#include "probe/stun_client.h"

#include <fmt/format.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <set>

namespace derp::probe {
namespace {

namespace asio = boost::asio;
using udp = asio::ip::udp;
using Clock = std::chrono::steady_clock;

struct InFlight {
  size_t probe = 0;
  Clock::time_point sent;
};

class Runner {
 public:
  Runner(const DERPMap& map, const std::vector<StunProbe>& plan, const StunRunOptions& o)
      : map_(map), plan_(plan), o_(o), s4_(ioc_), s6_(ioc_), end_(ioc_) {}

  StunRunResult run() {
    boost::system::error_code ec;
    s4_.open(udp::v4(), ec);
    if (!ec) s4_.bind(udp::endpoint(udp::v4(), 0), ec);
    res_.v4_socket = !ec && s4_.is_open();
    ec.clear();
    s6_.open(udp::v6(), ec);
    if (!ec) s6_.set_option(asio::ip::v6_only(true), ec);
    if (!ec) s6_.bind(udp::endpoint(udp::v6(), 0), ec);
    res_.v6_socket = !ec && s6_.is_open();

    resolve_targets();
    for (const auto& p : plan_) pending_sets_.insert(set_key(p));
    start_ = Clock::now();
    for (size_t i = 0; i < plan_.size(); ++i) {
      auto t = std::make_shared<asio::steady_timer>(ioc_, start_ + plan_[i].delay);
      t->async_wait([this, i, t](boost::system::error_code e) {
        if (!e) send(i);
      });
    }
    if (res_.v4_socket) receive(s4_, buf4_, from4_);
    if (res_.v6_socket) receive(s6_, buf6_, from6_);
    end_.expires_at(start_ + o_.timeout);
    end_.async_wait([this](boost::system::error_code e) {
      if (!e) ioc_.stop();
    });
    if (plan_.empty()) return res_;
    ioc_.run();
    return res_;
  }

 private:
  using SetKey = std::pair<int, int>;  // region, family
  static SetKey set_key(const StunProbe& p) {
    return {p.region_id, p.family == IpFamily::kV4 ? 4 : 6};
  }

  void resolve_targets() {
    targets_.resize(plan_.size());
    std::map<std::pair<std::string, int>, std::optional<asio::ip::address>> cache;
    udp::resolver resolver(ioc_);
    for (size_t i = 0; i < plan_.size(); ++i) {
      const StunProbe& p = plan_[i];
      const DERPNode& n = map_.regions.at(p.region_id).nodes.at(p.node_index);
      DialTarget t = node_stun_target(n, p.family);
      auto port = node_stun_port(n);
      if (t.kind == DialTarget::Kind::kSkip || !port) continue;
      const int fam = p.family == IpFamily::kV4 ? 4 : 6;
      auto key = std::make_pair(t.host, fam);
      auto it = cache.find(key);
      if (it == cache.end()) {
        std::optional<asio::ip::address> addr;
        boost::system::error_code ec;
        if (t.kind == DialTarget::Kind::kDialIp) {
          std::string h = t.host;
          if (auto pct = h.find('%'); pct != std::string::npos) h.resize(pct);
          auto a = asio::ip::make_address(h, ec);
          if (!ec) addr = a;
        } else {
          auto r = resolver.resolve(fam == 4 ? udp::v4() : udp::v6(), t.host, "", ec);
          if (!ec && !r.empty()) addr = r.begin()->endpoint().address();
        }
        if (!addr) {
          res_.errors.push_back(fmt::format("node {}: cannot resolve {} over IPv{}", n.name,
                                            t.host, fam));
        }
        it = cache.emplace(key, addr).first;
      }
      if (it->second) targets_[i] = udp::endpoint(*it->second, *port);
    }
  }

  void send(size_t i) {
    const StunProbe& p = plan_[i];
    if (done_sets_.count(set_key(p))) return;  // a retry that would add nothing
    if (!targets_[i]) return;
    udp::socket& s = p.family == IpFamily::kV4 ? s4_ : s6_;
    if (!s.is_open()) return;
    stun::TxId tx = stun::new_tx_id();
    auto req = std::make_shared<std::array<uint8_t, stun::kRequestLen>>();
    stun::encode_binding_request(std::span<uint8_t, stun::kRequestLen>(*req), tx);
    inflight_[tx] = {i, Clock::now()};
    s.async_send_to(asio::buffer(*req), *targets_[i],
                    [this, req, p](boost::system::error_code ec, size_t) {
                      if (ec) {
                        res_.errors.push_back(fmt::format("STUN send to region {}: {}",
                                                          p.region_id, ec.message()));
                        return;
                      }
                      (p.family == IpFamily::kV4 ? res_.v4_sent : res_.v6_sent) = true;
                    });
  }

  void receive(udp::socket& s, std::array<uint8_t, 1500>& buf, udp::endpoint& from) {
    s.async_receive_from(asio::buffer(buf), from,
                         [this, &s, &buf, &from](boost::system::error_code ec, size_t n) {
                           if (ec == asio::error::operation_aborted) return;
                           if (!ec) on_packet(std::span<const uint8_t>(buf.data(), n));
                           if (s.is_open()) receive(s, buf, from);
                         });
  }

  void on_packet(std::span<const uint8_t> pkt) {
    auto r = stun::parse_binding_response(pkt);
    if (!r) return;  // not STUN, a request, or unusable
    auto it = inflight_.find(r->tx_id);
    if (it == inflight_.end()) return;  // unknown or already answered transaction
    const StunProbe& p = plan_[it->second.probe];
    const auto now = Clock::now();
    StunReply reply;
    reply.region_id = p.region_id;
    reply.node_index = p.node_index;
    reply.family = p.family;
    reply.latency_ms =
        std::chrono::duration<double, std::milli>(now - it->second.sent).count();
    reply.mapped = r->mapped;
    inflight_.erase(it);
    const bool first_for_set = done_sets_.insert(set_key(p)).second;
    if (!first_for_set) return;  // a late answer to a retry: the set already has its sample
    res_.replies.push_back(reply);
    if (o_.on_reply) o_.on_reply(reply);
    answered_[p.region_id] = std::max(answered_[p.region_id], reply.latency_ms);
    if (done_sets_.size() == pending_sets_.size()) {
      ioc_.stop();
      return;
    }
    if (o_.stop_early && answered_.size() >= 3 && !early_end_set_) {
      double slowest = 0;
      for (const auto& [rid, ms] : answered_) slowest = std::max(slowest, ms);
      if (o_.full) slowest *= 2;
      auto at = now + std::chrono::microseconds(static_cast<int64_t>(slowest * 1000));
      if (at < end_.expiry()) {
        early_end_set_ = true;
        end_.expires_at(at);
        end_.async_wait([this](boost::system::error_code e) {
          if (!e) ioc_.stop();
        });
      }
    }
  }

  const DERPMap& map_;
  const std::vector<StunProbe>& plan_;
  const StunRunOptions& o_;
  asio::io_context ioc_;
  udp::socket s4_, s6_;
  asio::steady_timer end_;
  std::array<uint8_t, 1500> buf4_{}, buf6_{};
  udp::endpoint from4_, from6_;
  std::vector<std::optional<udp::endpoint>> targets_;
  std::map<stun::TxId, InFlight> inflight_;
  std::set<SetKey> pending_sets_, done_sets_;
  std::map<int, double> answered_;
  bool early_end_set_ = false;
  Clock::time_point start_;
  StunRunResult res_;
};

}  // namespace

StunRunResult run_stun_plan(const DERPMap& map, const std::vector<StunProbe>& plan,
                            const StunRunOptions& options) {
  Runner r(map, plan, options);
  return r.run();
}

bool os_has_ipv6() {
  asio::io_context ioc;
  udp::socket s(ioc);
  boost::system::error_code ec;
  s.open(udp::v6(), ec);
  if (ec) return false;
  s.bind(udp::endpoint(asio::ip::address_v6::loopback(), 0), ec);
  return !ec;
}

}  // namespace derp::probe
