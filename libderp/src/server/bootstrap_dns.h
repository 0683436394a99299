// derper's /bootstrap-dns (PROTOCOL.md §6.5): the addresses of --bootstrap-dns-names, resolved
// with the system resolver on a background thread (now, then every 10 minutes, as derper) so
// that a request never waits for DNS on an event loop.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace derp::server {

class BootstrapDns {
 public:
  explicit BootstrapDns(std::vector<std::string> names);
  ~BootstrapDns();
  BootstrapDns(const BootstrapDns&) = delete;
  BootstrapDns& operator=(const BootstrapDns&) = delete;

  // {"name": ["ip", ...], ...}; with `q`, only that name (an empty object when it is not one
  // of ours). Before the first lookup finished it waits for it (bounded).
  std::string json(std::string_view q);

 private:
  void run();
  std::vector<std::string> names_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool ready_ = false;
  bool stopping_ = false;
  std::map<std::string, std::vector<std::string>> addrs_;
  std::thread thread_;
};

// The system resolver's addresses for `name`, as text, IPv4 first; empty when it fails.
std::vector<std::string> resolve_all(const std::string& name);

}  // namespace derp::server
