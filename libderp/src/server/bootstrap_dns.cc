#include "server/bootstrap_dns.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

namespace derp::server {

std::vector<std::string> resolve_all(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::vector<std::string> v4, v6;
  if (getaddrinfo(name.c_str(), nullptr, &hints, &res) != 0) return {};
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {0};
    if (a->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, buf, sizeof buf);
      if (std::find(v4.begin(), v4.end(), buf) == v4.end()) v4.emplace_back(buf);
    } else if (a->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, buf,
                sizeof buf);
      if (std::find(v6.begin(), v6.end(), buf) == v6.end()) v6.emplace_back(buf);
    }
  }
  freeaddrinfo(res);
  v4.insert(v4.end(), v6.begin(), v6.end());
  return v4;
}

BootstrapDns::BootstrapDns(std::vector<std::string> names) : names_(std::move(names)) {
  thread_ = std::thread([this] { run(); });
}

BootstrapDns::~BootstrapDns() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BootstrapDns::run() {
  for (;;) {
    std::map<std::string, std::vector<std::string>> fresh;
    for (const auto& n : names_) fresh[n] = resolve_all(n);
    std::unique_lock lock(mu_);
    addrs_ = std::move(fresh);
    ready_ = true;
    cv_.notify_all();
    if (cv_.wait_for(lock, std::chrono::minutes(10), [&] { return stopping_; })) return;
  }
}

std::string BootstrapDns::json(std::string_view q) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, std::chrono::seconds(5), [&] { return ready_ || stopping_; });
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [name, ips] : addrs_) {
    if (q.empty() || q == name) j[name] = ips;
  }
  return j.dump();
}

}  // namespace derp::server
