// derp-watch: follow who is connected to DERP relays through the mesh watch stream, and check a
// mesh end to end.
//   derp-watch (SERVER... | --derp-map FILE|URL --region ID)
//              (--mesh-psk-file FILE | --mesh-key HEX) [--once] [--count N]
//              [--timeout D] [--json] [--ca-file PEM] [--insecure]
//              [--cert-name NAME|sha256-raw:HEX] [--proxy URL] [--websocket]
//   derp-watch --check-mesh (SERVER... | --derp-map M --region ID)
//              [--mesh-psk-file FILE | --mesh-key HEX] [--timeout D] [--json] [flags as above]
// With --derp-map, every non-STUNOnly node of the region is one relay, dialled by its own
// IPv4/IPv6/DERPPort/CertName/InsecureForTests (--cert-name does not apply).
// Watching: prints each relay's peer list once its initial list is complete (the Pong after
// WatchConns, see derp/watch.h), then every add/gone with a timestamp. Reconnects with backoff
// and says so. With several relays, also a merged view: keys connected to more than one relay.
// --check-mesh: for every ordered pair (i, j) a fresh client on relay i sends to a fresh
// client on relay j; prints the N×N delivery/latency matrix and whether every relay sees mesh
// links from all the others. Exit 0 when every pair delivers, 1 naming the failing pairs.
// docs/CLI.md and docs/MESH.md describe the output.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <ctime>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "common/cli.h"
#include "common/client_setup.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/json_output.h"
#include "common/term.h"
#include "derp/client.h"
#include "derp/derp_map.h"
#include "derp/watch.h"

namespace {

using namespace derp;
using namespace derp::tools;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

volatile std::sig_atomic_t g_interrupted = 0;
void on_signal(int) { g_interrupted = 1; }

std::string now_text() {
  const auto now = std::chrono::system_clock::now();
  const auto secs = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms.count());
}

std::vector<std::string> flag_names(uint8_t flags) {
  std::vector<std::string> out;
  if (flags & peer_present_flags::kIsRegular) out.push_back("regular");
  if (flags & peer_present_flags::kIsMeshPeer) out.push_back("mesh");
  if (flags & peer_present_flags::kIsProber) out.push_back("prober");
  if (flags & peer_present_flags::kNotIdeal) out.push_back("not-ideal");
  return out;
}

std::string peer_text(const WatchPeer& p) {
  std::string names;
  for (auto& n : flag_names(p.flags)) names += (names.empty() ? "" : ",") + n;
  return fmt::format("{} {} flags={}", p.key.to_string(),
                     p.has_endpoint ? p.endpoint() : std::string("-"),
                     p.has_flags ? fmt::format("0x{:02x}({})", p.flags, names) : "-");
}

json peer_json(const WatchPeer& p) {
  json j;
  j["key"] = p.key.to_string();
  j["endpoint"] = p.has_endpoint ? json(p.endpoint()) : json(nullptr);
  j["flags"] = p.has_flags ? json(p.flags) : json(nullptr);
  j["flag_names"] = flag_names(p.flags);
  return j;
}

const char* gone_reason_name(PeerGoneReason r) {
  switch (r) {
    case PeerGoneReason::kDisconnected:
      return "disconnected";
    case PeerGoneReason::kNotHere:
      return "not_here";
    case PeerGoneReason::kMeshConnBroke:
      return "mesh_conn_broke";
  }
  return "unknown";
}

// One relay to watch or check: a SERVER URL, or one node of the --derp-map region (dialled by
// the node's own rules: IPv4/IPv6 fields, DERPPort, CertName, InsecureForTests).
struct WatchTarget {
  std::string url;                   // the SERVER, or the node's https://HostName[:DERPPort]/derp
  std::string node;                  // the node's Name; "" for a SERVER
  std::optional<DERPRegion> region;  // the node alone in a copy of its region
  // How lines name it: the URL, or the node's name (URLs of map nodes repeat the same host).
  std::string label() const { return node.empty() ? url : node; }
};

std::vector<WatchTarget> url_targets(const std::vector<std::string>& servers) {
  std::vector<WatchTarget> out;
  for (const auto& url : servers) {
    WatchTarget t;
    t.url = url;
    out.push_back(std::move(t));
  }
  return out;
}

// Every non-STUNOnly node of the --derp-map region, in map order. kUsage when there is none.
Result<std::vector<WatchTarget>> region_targets(const ToolCli& cli) {
  auto region = load_region(cli);
  if (!region) return std::move(region).error();
  std::vector<WatchTarget> out;
  const bool plain = ToolCli::debug_use_derp_http();
  for (const auto& node : region->nodes) {
    if (node.stun_only) continue;
    WatchTarget t;
    t.url = node_url(node);
    if (plain) t.url = "http://" + t.url.substr(std::string_view("https://").size());
    t.node = node.name;
    t.region = *region;
    t.region->nodes = {node};
    out.push_back(std::move(t));
  }
  if (out.empty()) {
    return Error(ErrorKind::kUsage,
                 fmt::format("--region {}: no non-STUNOnly nodes to watch", cli.region()));
  }
  return out;
}

// Shared by both modes: a client (fresh key, optional mesh key) for one relay.
Result<std::unique_ptr<Client>> new_client(const WatchTarget& target, const MeshKey& mesh,
                                           const ToolCli& cli, std::chrono::milliseconds timeout) {
  ClientOptions co;
  co.private_key = NodePrivate::generate();
  co.server_url = target.url;
  if (target.region) {
    co.region = target.region;
    co.region_plain_http = ToolCli::debug_use_derp_http();
  }
  co.mesh_key = mesh;
  co.ca_file = cli.ca_file();
  co.insecure = cli.insecure();
  co.cert_name = cli.cert_name();
  co.proxy = cli.proxy();
  co.websocket = cli.websocket();
  co.connect_timeout = timeout;
  co.write_timeout = timeout;
  co.read_timeout = cli.read_timeout();
  co.recv_queue_depth = 4096;
  return Client::create(std::move(co));
}

// The "server" (and, for a map node, "node") fields of a JSON line about one relay.
void tag_relay(json& j, const std::string& url, const std::string& node) {
  j["server"] = url;
  if (!node.empty()) j["node"] = node;
}

// ---- watching

struct Watched {
  std::string url;
  std::string node;  // map node name, "" for a SERVER
  std::string label() const { return node.empty() ? url : node; }
  std::unique_ptr<Client> client;
  std::unique_ptr<WatchLoop> loop;
  std::map<NodePublic, WatchPeer> peers;  // (mu)
  bool synced = false;                    // (mu) first initial list printed
  std::optional<Error> last_error;        // (mu)
};

struct WatchState {
  std::mutex mu;
  std::condition_variable cv;
  bool json = false;
  bool multi = false;
  int64_t live_events = 0;
  std::optional<Error> fatal;  // a relay refused the watcher
  bool merged_printed = false;
};

void print_list(WatchState& st, Watched& w, uint64_t gen) {
  if (st.json) {
    for (auto& [k, p] : w.peers) {
      json j = json_ok();
      j["event"] = "peer";
      tag_relay(j, w.url, w.node);
      j.update(peer_json(p));
      print_json_line(j);
    }
    json j = json_ok();
    j["event"] = "synced";
    tag_relay(j, w.url, w.node);
    j["server_key"] = w.client->server_public_key().to_string();
    j["generation"] = gen;
    j["peers"] = w.peers.size();
    print_json_line(j);
    return;
  }
  std::cout << fmt::format("# {}{} ({}): {} peer(s)\n", w.node.empty() ? "" : "node " + w.node + " ",
                           w.url, w.client->server_public_key().to_string(), w.peers.size());
  for (auto& [k, p] : w.peers) std::cout << (st.multi ? w.label() + " " : "") << peer_text(p) << "\n";
  std::cout << std::flush;
}

void print_merged(WatchState& st, std::vector<std::unique_ptr<Watched>>& ws) {
  // A relay's own mesh links sit on every other relay: only regular keys can conflict.
  std::map<NodePublic, std::vector<std::string>> where;
  std::set<NodePublic> mesh_links;
  for (auto& w : ws) {
    for (auto& [k, p] : w->peers) {
      where[k].push_back(w->label());
      if (p.flags & peer_present_flags::kIsMeshPeer) mesh_links.insert(k);
    }
  }
  auto conflict = [&](const NodePublic& k) { return where[k].size() > 1 && !mesh_links.count(k); };
  size_t conflicts = 0;
  if (st.json) {
    json keys = json::array();
    for (auto& [k, urls] : where) {
      keys.push_back({{"key", k.to_string()},
                      {"servers", urls},
                      {"mesh_link", mesh_links.count(k) > 0},
                      {"conflict", conflict(k)}});
      if (conflict(k)) ++conflicts;
    }
    json j = json_ok();
    j["event"] = "merged";
    j["keys"] = keys;
    j["conflicts"] = conflicts;
    print_json_line(j);
    return;
  }
  std::cout << fmt::format("# merged: {} key(s) on {} relay(s)\n", where.size(), ws.size());
  for (auto& [k, urls] : where) {
    std::string list;
    for (auto& u : urls) list += (list.empty() ? "" : ", ") + u;
    if (conflict(k)) ++conflicts;
    std::cout << fmt::format("{} {}{}\n", k.to_string(), list,
                             conflict(k) ? "  <- on several relays" : "");
  }
  std::cout << fmt::format("# relays disagree on {} key(s)\n", conflicts) << std::flush;
}

int run_watch(ToolCli& cli, const std::vector<WatchTarget>& targets, const MeshKey& mesh,
              bool once, int64_t count, bool timeout_given) {
  WatchState st;
  st.json = cli.json();
  st.multi = targets.size() > 1;
  const auto timeout = once && !timeout_given ? std::chrono::milliseconds(10000) : cli.timeout();
  const bool bounded = once || timeout_given;
  const auto deadline = Clock::now() + timeout;

  std::vector<std::unique_ptr<Watched>> ws;
  for (auto& t : targets) {
    auto w = std::make_unique<Watched>();
    w->url = t.url;
    w->node = t.node;
    auto c = new_client(t, mesh, cli, bounded ? timeout : std::chrono::milliseconds(10000));
    if (!c) return cli.fail(t.node.empty() ? c.error() : c.error().wrap("node " + t.node));
    w->client = std::move(*c);
    if (t.node.empty()) w->url = w->client->server_url();  // canonical form
    ws.push_back(std::move(w));
  }
  auto all_synced = [&] {
    for (auto& w : ws) {
      if (!w->synced) return false;
    }
    return true;
  };

  for (auto& wp : ws) {
    Watched* w = wp.get();
    WatchCallbacks cb;
    cb.add = [&st, w](const WatchPeer& p) {
      if (p.key == w->client->self_public_key()) return;  // our own watch connection
      std::lock_guard lk(st.mu);
      w->peers[p.key] = p;
      if (!w->synced) return;  // part of the initial list, printed at sync
      ++st.live_events;
      if (st.json) {
        json j = json_ok();
        j["event"] = "add";
        j["time"] = now_text();
        tag_relay(j, w->url, w->node);
        j.update(peer_json(p));
        print_json_line(j);
      } else {
        std::cout << now_text() << " " << (st.multi ? w->label() + " " : "") << "add " << peer_text(p)
                  << std::endl;
      }
      st.cv.notify_all();
    };
    cb.gone = [&st, w](const WatchGone& g) {
      if (g.key == w->client->self_public_key()) return;
      std::lock_guard lk(st.mu);
      w->peers.erase(g.key);
      if (!w->synced) return;
      ++st.live_events;
      if (st.json) {
        json j = json_ok();
        j["event"] = "gone";
        j["time"] = now_text();
        tag_relay(j, w->url, w->node);
        j["key"] = g.key.to_string();
        j["reason"] = gone_reason_name(g.reason);
        j["synthetic"] = g.synthetic;
        print_json_line(j);
      } else {
        std::cout << now_text() << " " << (st.multi ? w->label() + " " : "") << "gone "
                  << g.key.to_string() << " " << gone_reason_name(g.reason)
                  << (g.synthetic ? " (synthetic: not seen again after a reconnect)" : "")
                  << std::endl;
      }
      st.cv.notify_all();
    };
    cb.synced = [&st, &ws, &all_synced, w](uint64_t gen, size_t) {
      std::lock_guard lk(st.mu);
      w->last_error.reset();
      if (!w->synced) {
        w->synced = true;
        print_list(st, *w, gen);
        if (st.multi && all_synced() && !st.merged_printed) {
          st.merged_printed = true;
          print_merged(st, ws);
        }
      } else if (!st.json) {
        std::cout << fmt::format("{} {} resynced: {} peer(s)\n", now_text(), w->label(),
                                 w->peers.size())
                  << std::flush;
      } else {
        json j = json_ok();
        j["event"] = "resynced";
        j["time"] = now_text();
        tag_relay(j, w->url, w->node);
        j["generation"] = gen;
        j["peers"] = w->peers.size();
        print_json_line(j);
      }
      st.cv.notify_all();
    };
    cb.disconnected = [&st, &cli, w](const Error& e, std::chrono::milliseconds retry) {
      std::lock_guard lk(st.mu);
      w->last_error = e;
      // A relay that drops us right after WatchConns refuses the watcher (wrong or no mesh
      // key): retrying cannot help.
      if (e.kind == ErrorKind::kProtocol) {
        if (!st.fatal) st.fatal = e;
        st.cv.notify_all();
        return;
      }
      cli.note(fmt::format("{}: {}; reconnecting in {}", w->label(), e.message,
                           format_duration(retry)));
      if (st.json) {
        json j = json_ok();
        j["event"] = "reconnecting";
        j["time"] = now_text();
        tag_relay(j, w->url, w->node);
        j["error"] = json_error(e)["error"];
        j["retry_in_ms"] = retry.count();
        print_json_line(j);
      }
      st.cv.notify_all();
    };
    WatchOptions wo;
    wo.min_backoff = std::chrono::milliseconds(200);
    wo.max_backoff = std::chrono::milliseconds(5000);
    w->loop = WatchLoop::start(*w->client, std::move(cb), std::move(wo));
  }

  int code = kExitOk;
  std::optional<Error> failure;
  {
    std::unique_lock lk(st.mu);
    for (;;) {
      if (st.fatal) {
        failure = st.fatal;
        break;
      }
      if (g_interrupted) break;
      if (once && all_synced()) break;
      if (!once && count > 0 && st.live_events >= count) break;
      if (bounded && Clock::now() >= deadline) {
        if (once) {
          std::optional<Error> last;
          for (auto& w : ws) {
            if (!w->synced && w->last_error) last = w->last_error;
          }
          failure = last ? last->wrap("no peer list within " + format_duration(timeout))
                         : Error(ErrorKind::kTimeout,
                                 "no peer list within " + format_duration(timeout));
        } else if (count > 0) {
          failure = Error(ErrorKind::kTimeout, fmt::format("saw {} of {} events before the timeout",
                                                           st.live_events, count));
        }
        break;
      }
      st.cv.wait_for(lk, std::chrono::milliseconds(100));
    }
  }
  for (auto& w : ws) w->loop->stop();
  if (failure) code = cli.fail(*failure);
  return code;
}

// ---- --check-mesh

struct Relay {
  std::string url;
  std::string node;  // map node name, "" for a SERVER
  std::unique_ptr<Client> client;
  NodePublic server_key;
  std::optional<Error> error;
};

struct PairResult {
  bool delivered = false;
  std::chrono::nanoseconds latency{0};
  std::string error;
};

int run_check(ToolCli& cli, const std::vector<WatchTarget>& targets, const MeshKey& mesh) {
  const auto timeout = cli.timeout();
  const size_t n = targets.size();
  std::vector<Relay> relays(n);
  for (size_t i = 0; i < n; ++i) {
    relays[i].url = targets[i].url;
    relays[i].node = targets[i].node;
    auto c = new_client(targets[i], MeshKey{}, cli, timeout);
    if (!c) return cli.fail(c.error());
    relays[i].client = std::move(*c);
    if (targets[i].node.empty()) relays[i].url = relays[i].client->server_url();
  }
  auto progress = ProgressLine::for_stderr(cli.name(), cli.json());
  progress.start(fmt::format("mesh check: connecting to {} relay(s)", n));
  for (size_t i = 0; i < n; ++i) {
    Relay& r = relays[i];
    progress.update(fmt::format("mesh check: connecting to relay {}/{}", i + 1, n));
    if (auto ok = r.client->connect(); !ok) {
      r.error = ok.error();  // shown with the relays and in the failure line
    } else {
      r.server_key = r.client->server_public_key();
    }
  }

  // Each pair gets the whole --timeout (the mesh may still be learning the fresh keys).
  std::vector<std::vector<PairResult>> m(n, std::vector<PairResult>(n));
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      PairResult& pr = m[i][j];
      progress.update(fmt::format("mesh check: pair {}/{} ({}->{})", i * n + j + 1, n * n, i, j));
      if (relays[i].error || relays[j].error) {
        pr.error = fmt::format("relay {} unreachable", relays[i].error ? i : j);
        continue;
      }
      Client& from = *relays[i].client;
      Client& to = *relays[j].client;
      const auto until = Clock::now() + timeout;
      std::map<std::string, Clock::time_point> sent;
      uint64_t seq = 0;
      while (!pr.delivered && Clock::now() < until && !g_interrupted) {
        const std::string payload = fmt::format("derp-watch check {}->{} #{}", i, j, seq++);
        auto s = from.send(to.self_public_key(),
                           {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()});
        if (!s) {
          pr.error = s.error().message;
          break;
        }
        sent[payload] = Clock::now();
        const auto wait_until = std::min(until, Clock::now() + std::chrono::milliseconds(200));
        while (Clock::now() < wait_until) {
          auto left = std::chrono::duration_cast<std::chrono::milliseconds>(wait_until - Clock::now());
          auto got = to.recv(std::max(left, std::chrono::milliseconds(1)));
          if (!got) {
            if (got.error().kind != ErrorKind::kTimeout) pr.error = got.error().message;
            break;
          }
          auto* pkt = std::get_if<ReceivedPacket>(&*got);
          if (!pkt || pkt->src != from.self_public_key()) continue;
          auto it = sent.find(std::string(pkt->data.begin(), pkt->data.end()));
          if (it == sent.end()) continue;  // a late copy of an earlier pair's attempt
          pr.delivered = true;
          pr.latency = Clock::now() - it->second;
          pr.error.clear();
          break;
        }
      }
      if (!pr.delivered && pr.error.empty()) {
        pr.error = "nothing arrived within " + format_duration(timeout);
      }
    }
  }

  // Peer views: with the mesh key, every relay's watch list must show a mesh-peer connection
  // from each other relay (the full mesh of links is up).
  std::optional<bool> views_agree;
  json views = json::array();
  std::vector<std::string> view_problems;
  std::vector<size_t> unknown_views;
  if (!mesh.is_zero()) {
    views_agree = true;
    for (size_t j = 0; j < n; ++j) {
      progress.update(fmt::format("mesh check: peer view of relay {}/{}", j + 1, n));
      json v;
      tag_relay(v, relays[j].url, relays[j].node);
      auto c = new_client(targets[j], mesh, cli, timeout);
      if (!c) {
        progress.finish();
        return cli.fail(c.error());
      }
      std::mutex mu;
      std::condition_variable cv;
      std::map<NodePublic, WatchPeer> peers;
      bool synced = false;
      std::optional<Error> err;
      WatchCallbacks cb;
      cb.add = [&](const WatchPeer& p) {
        std::lock_guard lk(mu);
        peers[p.key] = p;
      };
      cb.gone = [&](const WatchGone& g) {
        std::lock_guard lk(mu);
        peers.erase(g.key);
      };
      cb.synced = [&](uint64_t, size_t) {
        std::lock_guard lk(mu);
        synced = true;
        cv.notify_all();
      };
      cb.disconnected = [&](const Error& e, std::chrono::milliseconds) {
        std::lock_guard lk(mu);
        err = e;
        if (e.kind == ErrorKind::kProtocol) cv.notify_all();
      };
      auto loop = WatchLoop::start(**c, std::move(cb));
      {
        std::unique_lock lk(mu);
        cv.wait_for(lk, timeout, [&] {
          return synced || (err && err->kind == ErrorKind::kProtocol);
        });
      }
      loop->stop();
      std::lock_guard lk(mu);
      if (!synced) {
        views_agree = false;
        const std::string why = err ? err->message : "no peer list within " + format_duration(timeout);
        view_problems.push_back(fmt::format("relay {}: {}", j, why));
        v["error"] = why;
        views.push_back(v);
        continue;
      }
      // A relay that sends PeerPresent without flags (derper before it had them) does not say
      // which connections are mesh links: its view is unknown, not a disagreement.
      const bool flagless =
          !peers.empty() && std::none_of(peers.begin(), peers.end(),
                                         [](const auto& p) { return p.second.has_flags; });
      json missing = json::array();
      for (size_t i = 0; i < n && !flagless; ++i) {
        if (i == j || relays[i].error) continue;
        auto it = peers.find(relays[i].server_key);
        if (it == peers.end() || !(it->second.flags & peer_present_flags::kIsMeshPeer)) {
          missing.push_back(i);
          views_agree = false;
          view_problems.push_back(fmt::format("relay {} has no mesh link from relay {}", j, i));
        }
      }
      v["peers"] = peers.size();
      v["mesh_view"] = flagless ? "unknown" : missing.empty() ? "agree" : "disagree";
      v["missing_mesh_links_from"] = flagless ? json(nullptr) : missing;
      if (flagless) {
        unknown_views.push_back(j);
        view_problems.push_back(fmt::format(
            "relay {}: mesh view unknown (its PeerPresent frames carry no flags, as older "
            "derpers send them)",
            j));
      }
      views.push_back(v);
    }
  }

  std::vector<std::string> failing;
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (!m[i][j].delivered) failing.push_back(fmt::format("{}->{}", i, j));
    }
  }

  progress.finish();
  json check_json = json_ok();  // printed last: a failure adds its error
  if (cli.json()) {
    json& j = check_json;
    j["event"] = "check_mesh";
    json rs = json::array();
    for (auto& r : relays) {
      json rj;
      tag_relay(rj, r.url, r.node);
      rj["server_key"] = r.error ? json(nullptr) : json(r.server_key.to_string());
      if (r.error) rj["error"] = json_error(*r.error)["error"];
      rs.push_back(rj);
    }
    j["relays"] = rs;
    json pairs = json::array();
    for (size_t a = 0; a < n; ++a) {
      for (size_t b = 0; b < n; ++b) {
        json p{{"from", a}, {"to", b}, {"delivered", m[a][b].delivered}};
        p["latency_ms"] = m[a][b].delivered
                              ? json(std::chrono::duration<double, std::milli>(m[a][b].latency).count())
                              : json(nullptr);
        if (!m[a][b].delivered) p["error"] = m[a][b].error;
        pairs.push_back(p);
      }
    }
    j["pairs"] = pairs;
    j["failing_pairs"] = failing;
    j["views_checked"] = views_agree.has_value();
    j["views_agree"] = views_agree ? json(*views_agree) : json(nullptr);
    j["views_unknown"] = unknown_views;
    j["views"] = views;
  } else {
    const Palette out = palette_for(STDOUT_FILENO, false, cli.no_color());
    std::cout << fmt::format("mesh check of {} relay(s):\n", n);
    for (size_t i = 0; i < n; ++i) {
      std::cout << fmt::format("  [{}] {}{} {}\n", i,
                               relays[i].node.empty() ? "" : "node " + relays[i].node + " ",
                               relays[i].url,
                               relays[i].error ? "UNREACHABLE: " + relays[i].error->message
                                               : relays[i].server_key.to_string());
    }
    std::cout << "delivery (row = sender's relay, column = receiver's relay):\n      ";
    for (size_t b = 0; b < n; ++b) std::cout << fmt::format("{:>10}", fmt::format("[{}]", b));
    std::cout << "\n";
    for (size_t a = 0; a < n; ++a) {
      std::cout << fmt::format("  [{}] ", a);
      for (size_t b = 0; b < n; ++b) {
        // Padded before painting: the colour's escape bytes take no column.
        if (m[a][b].delivered) {
          const double ms = std::chrono::duration<double, std::milli>(m[a][b].latency).count();
          std::cout << out.good(fmt::format("{:>10}", fmt::format("{:.2f}ms", ms)));
        } else {
          std::cout << out.bad(fmt::format("{:>10}", "FAIL"));
        }
      }
      std::cout << "\n";
    }
    if (views_agree) {
      std::cout << "peer views: "
                << (!*views_agree ? out.bad("DISAGREE") + "\n"
                    : unknown_views.empty()
                        ? out.good("agree") + " (every relay sees mesh links from all others)\n"
                        : out.good("agree") + " where known\n");
      for (auto& p : view_problems) std::cout << "  " << p << "\n";
    } else {
      std::cout << "peer views: not checked (give --mesh-psk-file or --mesh-key)\n";
    }
    if (failing.empty()) {
      std::cout << out.good("all pairs deliver") << "\n";
    } else {
      std::cout << out.bad("failing pairs:");
      for (auto& f : failing) std::cout << " " << f;
      std::cout << "\n";
      for (size_t a = 0; a < n; ++a) {
        for (size_t b = 0; b < n; ++b) {
          if (!m[a][b].delivered) {
            std::cout << fmt::format("  {}->{}: {}\n", a, b, m[a][b].error);
          }
        }
      }
    }
    std::cout << std::flush;
  }
  if (!failing.empty()) {
    std::string list;
    for (auto& f : failing) list += (list.empty() ? "" : ", ") + f;
    for (size_t i = 0; i < n; ++i) {
      if (!relays[i].error) continue;
      list += fmt::format("; relay {}{} unreachable: {}", i,
                          relays[i].node.empty() ? "" : " (node " + relays[i].node + ")",
                          relays[i].error->message);
    }
    const int code = cli.fail_check("failing pairs: " + list, "", &check_json);
    if (cli.json()) print_json_line(check_json);
    return code;
  }
  if (cli.json()) print_json_line(check_json);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  ToolCli cli("derp-watch",
              "Watch who is connected to DERP relays (mesh key needed), or check a mesh");
  std::vector<std::string> servers;
  std::string mesh_file;
  std::string mesh_hex;
  bool once = false;
  bool check = false;
  int64_t count = 0;
  auto& app = cli.app();
  app.add_option("--mesh-psk-file", mesh_file, "File holding the 64-hex mesh key")
      ->type_name("FILE");
  app.add_option("--mesh-key", mesh_hex, "The mesh key as 64 hex digits")->type_name("HEX");
  app.add_flag("--once", once, "Print each relay's current peer list and exit");
  app.add_option("--count,-n", count, "Exit after N live add/gone events (0 = no limit)")
      ->type_name("N")
      ->check(at_least(0))
      ->capture_default_str();
  app.add_flag("--check-mesh", check,
               "Send between fresh clients on every ordered pair of relays; print the matrix");
  // Every SERVER is dialled with the same --ca-file / --insecure / --cert-name, --proxy and
  // --websocket; every node of a --derp-map region by its own CertName / InsecureForTests.
  cli.add_servers(servers);
  cli.add_read_timeout();
  cli.add_json();
  cli.add_timeout("10s",
                  "--once / --check-mesh: give up after this long (per pair with --check-mesh); "
                  "live: stop after this long (default: run until interrupted)");
  cli.set_manual({
      .description =
          "derp-watch shows who is connected to one or more relays, live: the watch-connection "
          "loop of derper's mesh client made visible, so it needs the relays' mesh key "
          "(--mesh-psk-file or --mesh-key). Per relay it prints the initial peer list, then "
          "every add and gone event with a UTC timestamp; with several relays also a merged "
          "view that marks a regular key seen on more than one relay. A broken connection is "
          "reconnected with backoff and resynced.\n\n"
          "--once prints the lists and exits; --count N exits after N live events; --timeout "
          "in live mode stops after that long. Without either it runs until SIGINT or SIGTERM.\n\n"
          "--check-mesh sends a packet between fresh clients for every ordered pair of the "
          "given relays and prints the matrix of latencies (FAIL where nothing arrived); with "
          "the mesh key it also checks that every relay's peer list shows a mesh link from each "
          "other relay. It exits 0 when every pair delivers and 1 otherwise.\n\n"
          "With --derp-map and --region every node of the region that is not STUNOnly is one "
          "relay, named by its Name.",
      .examples = {{"Print a relay's current peer list and exit:",
                    "derp-watch http://127.0.0.1:3340 --mesh-psk-file mesh.key --once"},
                   {"Check that two meshed relays forward to each other:",
                    "derp-watch --check-mesh --mesh-psk-file mesh.key http://127.0.0.1:3340 "
                    "http://127.0.0.1:3341"}},
      .environment = {derp_http_environment()},
  });
  if (auto code = cli.parse(argc, argv)) return *code;
  const bool timeout_given = app.count("--timeout") > 0;

  MeshKey mesh;
  if (!mesh_file.empty() && !mesh_hex.empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "give --mesh-psk-file or --mesh-key, not both"));
  }
  if (!mesh_file.empty()) {
    auto k = load_mesh_key_file(mesh_file);
    if (!k) return cli.fail(k.error());  // the message names the file
    mesh = *k;
  } else if (!mesh_hex.empty()) {
    auto k = MeshKey::parse(mesh_hex);
    if (!k) return cli.fail(k.error().wrap("--mesh-key"));
    mesh = *k;
  }
  if (cli.timeout().count() <= 0) {
    return cli.fail(Error(ErrorKind::kUsage, "--timeout must be positive"));
  }
  std::vector<WatchTarget> targets;
  if (cli.derp_map().empty()) {
    targets = url_targets(servers);
  } else {
    auto t = region_targets(cli);
    if (!t) return cli.fail(t.error());
    targets = std::move(*t);
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (check) {
    if (once || count > 0) {
      return cli.fail(Error(ErrorKind::kUsage, "--check-mesh takes neither --once nor --count"));
    }
    return run_check(cli, targets, mesh);
  }
  if (mesh.is_zero()) {
    return cli.fail(Error(ErrorKind::kUsage,
                          "watching needs the mesh key: --mesh-psk-file FILE or --mesh-key HEX"));
  }
  if (once && count > 0) return cli.fail(Error(ErrorKind::kUsage, "--once and --count conflict"));
  return run_watch(cli, targets, mesh, once, count, timeout_given);
}
