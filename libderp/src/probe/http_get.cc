#include "probe/http_get.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <mutex>

namespace derp::probe {
namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Sink {
  HttpResponse* resp;
  size_t max_body;
};

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  const size_t len = size * n;
  const size_t room = s->max_body - std::min(s->max_body, s->resp->body.size());
  s->resp->body.append(data, std::min(len, room));
  return len;  // the rest is read and dropped: a long body is still "a body"
}

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Sink*>(user);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) s->resp->headers.clear();  // a new response (e.g. after 100)
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string value = line.substr(colon + 1);
    auto b = value.find_first_not_of(" \t");
    auto e = value.find_last_not_of(" \t\r\n");
    value = b == std::string::npos ? "" : value.substr(b, e - b + 1);
    s->resp->headers[name] = value;
  }
  return size * n;
}

ErrorKind kind_of(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return ErrorKind::kDns;
    case CURLE_COULDNT_CONNECT:
      return ErrorKind::kConnect;
    case CURLE_OPERATION_TIMEDOUT:
      return ErrorKind::kTimeout;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return ErrorKind::kTls;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return ErrorKind::kUsage;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
      return ErrorKind::kIo;
    default:
      return ErrorKind::kHttp;
  }
}

}  // namespace

Result<HttpResponse> http_get(const HttpGet& req) {
  global_init();
  std::unique_ptr<CURL, void (*)(CURL*)> h(curl_easy_init(), curl_easy_cleanup);
  if (!h) return Error(ErrorKind::kInternal, "curl_easy_init failed");
  HttpResponse resp;
  Sink sink{&resp, req.max_body};
  char errbuf[CURL_ERROR_SIZE] = {};
  CURL* c = h.get();
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(req.timeout.count()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &sink);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "libderp-probe/" DERP_VERSION_STRING);
  if (req.fresh_connection) {
    curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
  }
  if (req.insecure) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!req.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, req.ca_file.c_str());
  curl_slist* headers = nullptr;
  for (const auto& hd : req.headers) headers = curl_slist_append(headers, hd.c_str());
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> headers_guard(headers, curl_slist_free_all);
  if (headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_slist* resolve = nullptr;
  if (!req.resolve.empty()) resolve = curl_slist_append(resolve, req.resolve.c_str());
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> resolve_guard(resolve, curl_slist_free_all);
  if (resolve) curl_easy_setopt(c, CURLOPT_RESOLVE, resolve);

  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    std::string why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    return Error(kind_of(rc), fmt::format("GET {}: {}", req.url, why));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp.status);
  curl_off_t start = 0, setup = 0, connect = 0;
  curl_easy_getinfo(c, CURLINFO_STARTTRANSFER_TIME_T, &start);
  curl_easy_getinfo(c, CURLINFO_APPCONNECT_TIME_T, &setup);
  curl_easy_getinfo(c, CURLINFO_CONNECT_TIME_T, &connect);
  const curl_off_t ready = std::max(setup, connect);
  resp.request_ms = static_cast<double>(std::max<curl_off_t>(0, start - ready)) / 1000.0;
  char* ip = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip) resp.primary_ip = ip;
  return resp;
}

}  // namespace derp::probe
