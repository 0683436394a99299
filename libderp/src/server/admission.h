// Who may connect (PROTOCOL.md §4.11): an allowlist file of node keys (reloaded on demand) and
// derper's --verify-client-url admission controller, asked over HTTP by worker threads so no
// event loop ever blocks on it. Mesh peers never come here.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "derp/key.h"
#include "derp/result.h"
#include "derp/server.h"
#include "server/stats.h"

namespace derp::server {

// nodekey:HEX per line; blank lines and text after '#' ignored. kUsage names the bad line.
Result<std::unordered_set<NodePublic>> parse_allow_keys(std::string_view text,
                                                        std::string_view where);

// The admission controller's verdict from its HTTP status and body: nullopt = admit, else why
// not. derper admits only on 200 with a JSON body whose "Allow" is true.
std::optional<std::string> admission_verdict(long http_status, std::string_view body);

// True for an http:// or https:// URL (scheme case-insensitive): the only admission URLs.
bool is_http_url(std::string_view url);

class Admission {
 public:
  // nullopt = admitted; otherwise the one-line reason for the log.
  using Done = std::function<void(std::optional<std::string>)>;

  // With an admission URL, also asks it once at start-up (a HEAD request on a worker) and logs
  // loudly when it cannot be reached.
  Admission(const ServerOptions& opts, Stats& stats);
  ~Admission();  // stop()
  Admission(const Admission&) = delete;
  Admission& operator=(const Admission&) = delete;

  // (Re)reads the allowlist file; on error the previous list stays. Returns the key count.
  Result<size_t> load_allow_keys();
  // nullopt when `key` passes the allowlist (or there is none), else the reason.
  std::optional<std::string> check_allow_keys(const NodePublic& key) const;

  bool asks_url() const { return !opts_.verify_client_url.empty(); }
  // Asks the URL on a worker thread; `done` runs on that thread.
  void verify_async(const NodePublic& key, std::string source_ip, Done done);
  // Ends the workers; pending requests finish (bounded by the request timeout) first.
  void stop();

 private:
  struct Job {
    NodePublic key;
    std::string ip;
    Done done;
    bool startup_check = false;  // the start-up reachability check, not a client
  };
  void worker();
  std::optional<std::string> ask(const Job& job);
  // An outage is logged when it starts and when it ends, never once per client; every client
  // it admits unchecked (fail-open) or refuses (fail-closed) is counted.
  void note_unreachable(const std::string& why, bool at_startup);
  void note_reachable();

  const ServerOptions& opts_;
  Stats& stats_;
  std::mutex outage_mu_;
  bool outage_ = false;
  int64_t outage_clients_ = 0;  // admitted unchecked, or refused, during this outage
  mutable std::shared_mutex allow_mu_;
  std::optional<std::unordered_set<NodePublic>> allow_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace derp::server
