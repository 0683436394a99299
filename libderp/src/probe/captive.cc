// Captive-portal detection: GET /generate_204 with a random challenge. PROTOCOL.md §10.
#include <fmt/format.h>
#include <sodium.h>

#include <future>

#include "codec/captive_challenge.h"
#include "derp/netcheck.h"
#include "probe/http_get.h"

namespace derp::probe {
namespace {

constexpr const char* kNoCache =
    "Cache-Control: no-cache, no-store, must-revalidate, no-transform, max-age=0";

std::string random_challenge() {
  uint8_t raw[12];
  randombytes_buf(raw, sizeof raw);
  std::string out = "ts_";
  for (uint8_t b : raw) out += fmt::format("{:02x}", b);
  return out;
}

}  // namespace

const char* captive_verdict_name(CaptiveVerdict v) {
  switch (v) {
    case CaptiveVerdict::kNoPortal: return "no_portal";
    case CaptiveVerdict::kRedirect: return "redirect";
    case CaptiveVerdict::kBody: return "body";
    case CaptiveVerdict::kMissingHeader: return "missing_header";
    case CaptiveVerdict::kWrongHeader: return "wrong_header";
    case CaptiveVerdict::kBadStatus: return "bad_status";
    case CaptiveVerdict::kNoResult: return "no_result";
  }
  return "unknown";
}

CaptiveResult check_captive_endpoint(const std::string& url, std::chrono::milliseconds timeout) {
  CaptiveResult r;
  r.url = url;
  if (sodium_init() < 0) {
    r.error = Error(ErrorKind::kInternal, "libsodium init failed");
    return r;
  }
  const std::string challenge = random_challenge();
  HttpGet req;
  req.url = fmt::format("{}{}t={}", url, url.find('?') == std::string::npos ? "?" : "&",
                        std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count());
  req.headers = {kNoCache, "X-Tailscale-Challenge: " + challenge};
  req.timeout = timeout;
  req.max_body = 4096;
  auto resp = http_get(req);
  if (!resp) {
    r.error = resp.error();
    r.detail = resp.error().message;
    return r;
  }
  r.status = resp->status;
  r.latency_ms = resp->request_ms;
  const auto header = [&](const char* name) -> const std::string* {
    auto it = resp->headers.find(name);
    return it == resp->headers.end() ? nullptr : &it->second;
  };
  if (r.status >= 300 && r.status < 400) {
    r.verdict = CaptiveVerdict::kRedirect;
    const std::string* loc = header("location");
    r.detail = fmt::format("{} redirect to {}", r.status, loc ? *loc : "(no Location)");
    return r;
  }
  if (r.status != 204) {
    if (r.status >= 200 && r.status < 300) {
      r.verdict = CaptiveVerdict::kBody;
      r.detail = fmt::format("{} with a {}-byte body instead of 204", r.status, resp->body.size());
    } else {
      r.verdict = CaptiveVerdict::kBadStatus;
      r.detail = fmt::format("status {} instead of 204", r.status);
    }
    return r;
  }
  const std::string expected = *captive_challenge_response(challenge);
  const std::string* got = header("x-tailscale-response");
  if (!got) {
    r.verdict = CaptiveVerdict::kMissingHeader;
    r.detail = "204 without X-Tailscale-Response: something other than the relay answered";
  } else if (*got != expected) {
    r.verdict = CaptiveVerdict::kWrongHeader;
    r.detail = fmt::format("X-Tailscale-Response \"{}\", expected \"{}\"", *got, expected);
  } else {
    r.verdict = CaptiveVerdict::kNoPortal;
    r.detail = "204 with the expected X-Tailscale-Response";
  }
  return r;
}

std::vector<std::string> captive_endpoints(const DERPMap& map, int home, uint16_t port,
                                           size_t max) {
  std::vector<std::string> first, rest;
  for (const auto& [id, r] : map.regions) {
    if (r.avoid || r.no_measure_no_home) continue;
    for (const auto& n : r.nodes) {
      if (!n.can_port80 || ip_literal_family(n.ipv4) != IpFamily::kV4) continue;
      std::string url = port == 80 ? fmt::format("http://{}/generate_204", n.ipv4)
                                   : fmt::format("http://{}:{}/generate_204", n.ipv4, port);
      (id == home ? first : rest).push_back(std::move(url));
    }
  }
  first.insert(first.end(), rest.begin(), rest.end());
  if (first.size() > max) first.resize(max);
  return first;
}

std::vector<CaptiveResult> check_captive(const std::vector<std::string>& urls,
                                         std::chrono::milliseconds timeout) {
  std::vector<std::future<CaptiveResult>> jobs;
  for (const auto& u : urls) {
    jobs.push_back(std::async(std::launch::async, check_captive_endpoint, u, timeout));
  }
  std::vector<CaptiveResult> out;
  for (auto& j : jobs) out.push_back(j.get());
  return out;
}

}  // namespace derp::probe
