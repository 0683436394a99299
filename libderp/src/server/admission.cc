#include "server/admission.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace derp::server {

namespace {

constexpr size_t kMaxBody = 4096;  // derper reads at most 4 KiB of the answer
constexpr int kWorkers = 4;

size_t collect(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  const size_t len = size * n;
  if (body->size() < kMaxBody) body->append(data, std::min(len, kMaxBody - body->size()));
  return len;
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

Result<std::unordered_set<NodePublic>> parse_allow_keys(std::string_view text,
                                                        std::string_view where) {
  std::unordered_set<NodePublic> keys;
  size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    line = line.substr(0, line.find('#'));
    const std::string t = trim(line);
    if (t.empty()) continue;
    auto key = NodePublic::parse_any(t);
    if (!key) {
      return Error(ErrorKind::kUsage,
                   fmt::format("{}:{}: {}", where, line_no, key.error().message));
    }
    keys.insert(*key);
  }
  return keys;
}

std::optional<std::string> admission_verdict(long http_status, std::string_view body) {
  if (http_status != 200) {
    return fmt::format("admission controller answered HTTP {}", http_status);
  }
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "admission controller sent malformed JSON";
  auto it = j.find("Allow");
  if (it == j.end() || !it->is_boolean() || !it->get<bool>()) {
    return "denied by the admission controller";
  }
  return std::nullopt;
}

Admission::Admission(const ServerOptions& opts, Stats& stats) : opts_(opts), stats_(stats) {
  if (asks_url()) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
    jobs_.push_back(Job{NodePublic{}, {}, [](std::optional<std::string>) {}, true});
    for (int i = 0; i < kWorkers; ++i) workers_.emplace_back([this] { worker(); });
  }
}

bool is_http_url(std::string_view url) {
  auto starts = [&](std::string_view scheme) {
    if (url.size() <= scheme.size()) return false;
    for (size_t i = 0; i < scheme.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(url[i])) != scheme[i]) return false;
    }
    return true;
  };
  return starts("http://") || starts("https://");
}

void Admission::note_unreachable(const std::string& why, bool at_startup) {
  if (!at_startup) {
    if (opts_.verify_client_url_fail_open) stats_.add(Counter::kAdmittedFailOpen);
  }
  std::lock_guard lock(outage_mu_);
  if (!at_startup) ++outage_clients_;
  if (outage_) return;
  outage_ = true;
  if (!opts_.log) return;
  opts_.log(fmt::format(
      "WARNING: admission controller unreachable{} ({}: {}): {} until it answers",
      at_startup ? " at start-up" : "", opts_.verify_client_url, why,
      opts_.verify_client_url_fail_open
          ? "clients are admitted UNCHECKED (fail-open, derper's default; "
            "--verify-client-url-fail-open=false refuses them)"
          : "clients are refused (--verify-client-url-fail-open=false)"));
}

void Admission::note_reachable() {
  std::lock_guard lock(outage_mu_);
  if (!outage_) return;
  outage_ = false;
  if (opts_.log) {
    opts_.log(fmt::format("admission controller {} answers again; {} client(s) were {} while it "
                          "was unreachable",
                          opts_.verify_client_url, outage_clients_,
                          opts_.verify_client_url_fail_open ? "admitted unchecked" : "refused"));
  }
  outage_clients_ = 0;
}

Admission::~Admission() { stop(); }

void Admission::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
  std::deque<Job> dropped;
  {
    std::lock_guard lock(mu_);
    dropped.swap(jobs_);
  }
}

Result<size_t> Admission::load_allow_keys() {
  if (opts_.allow_keys_file.empty()) return size_t{0};
  std::ifstream in(opts_.allow_keys_file);
  if (!in) {
    return Error(ErrorKind::kUsage,
                 fmt::format("allow-keys file {}: cannot read it", opts_.allow_keys_file));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto keys = parse_allow_keys(ss.str(), opts_.allow_keys_file);
  if (!keys) return std::move(keys).error();
  const size_t n = keys->size();
  std::unique_lock lock(allow_mu_);
  allow_ = std::move(*keys);
  return n;
}

std::optional<std::string> Admission::check_allow_keys(const NodePublic& key) const {
  std::shared_lock lock(allow_mu_);
  if (!allow_ || allow_->count(key) > 0) return std::nullopt;
  return "not in the allow-keys file";
}

void Admission::verify_async(const NodePublic& key, std::string source_ip, Done done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      jobs_.push_back(Job{key, std::move(source_ip), std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  done(std::string("relay shutting down"));
}

void Admission::worker() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job.done(ask(job));
  }
}

std::optional<std::string> Admission::ask(const Job& job) {
  const std::string request =
      nlohmann::json{{"NodePublic", job.key.to_string()}, {"Source", job.ip}}.dump();
  std::string body;
  char errbuf[CURL_ERROR_SIZE] = {0};
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return "admission controller: curl_easy_init failed";
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, opts_.verify_client_url.c_str());
  // Only HTTP(S), also after a redirect: a URL of another scheme must never become a silent
  // "unreachable, admit everyone" (Server::start refuses one, this is the second lock).
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  if (job.startup_check) {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);  // any HTTP answer means reachable
  } else {
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.size()));
  }
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(opts_.verify_client_timeout.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  if (rc == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    const std::string why = errbuf[0] != 0 ? errbuf : curl_easy_strerror(rc);
    stats_.add(Counter::kAdmissionUnreachable);
    note_unreachable(why, job.startup_check);
    if (opts_.verify_client_url_fail_open) return std::nullopt;
    return fmt::format("admission controller unreachable: {}", why);
  }
  note_reachable();
  if (job.startup_check) return std::nullopt;
  return admission_verdict(status, body);
}

}  // namespace derp::server
