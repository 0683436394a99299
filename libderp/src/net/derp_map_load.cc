#include "derp/derp_map_load.h"

#include <curl/curl.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>

namespace derp {
namespace {

size_t append_body(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  constexpr size_t kMaxMap = 16 * 1024 * 1024;  // a real map is ~30 KB
  if (body->size() + size * n > kMaxMap) return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  body->append(data, size * n);
  return size * n;
}

ErrorKind kind_for(CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return ErrorKind::kDns;
    case CURLE_COULDNT_CONNECT: return ErrorKind::kConnect;
    case CURLE_OPERATION_TIMEDOUT: return ErrorKind::kTimeout;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE: return ErrorKind::kTls;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return ErrorKind::kUsage;
    default: return ErrorKind::kHttp;
  }
}

Result<std::string> fetch_url(const std::string& url, std::chrono::milliseconds timeout,
                              const std::string& ca_file) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  CURL* curl = curl_easy_init();
  if (!curl) return Error(ErrorKind::kInternal, "DERP map " + url + ": libcurl init failed");
  std::string body;
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "libderp/" DERP_VERSION_STRING);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  if (!ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    std::string why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    return Error(kind_for(rc), "DERP map " + url + ": " + why);
  }
  // file:// has no status (0). Anything but 200 after redirects is not a map.
  if (status != 0 && status != 200) {
    return Error(ErrorKind::kHttp, "DERP map " + url + ": HTTP status " + std::to_string(status));
  }
  return body;
}

bool has_scheme(std::string_view s, std::string_view scheme) {
  if (s.size() < scheme.size()) return false;
  for (size_t i = 0; i < scheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != scheme[i]) return false;
  }
  return true;
}

}  // namespace

Result<DERPMap> load_derp_map(std::string_view source, std::chrono::milliseconds timeout,
                              const std::string& ca_file, DerpMapChecks checks) {
  std::string text;
  const std::string src(source);
  if (has_scheme(source, "http://") || has_scheme(source, "https://") ||
      has_scheme(source, "file://")) {
    auto body = fetch_url(src, timeout, ca_file);
    if (!body) {
      // A missing file:// is a configuration mistake, not an HTTP one.
      if (has_scheme(source, "file://")) {
        return Error(ErrorKind::kUsage, body.error().message);
      }
      return std::move(body).error();
    }
    text = std::move(*body);
  } else {
    std::ifstream in(src, std::ios::binary);
    if (!in) {
      const int err = errno;
      return Error(ErrorKind::kUsage,
                   "DERP map: cannot read " + src + (err ? ": " + std::string(std::strerror(err)) : ""));
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto map = parse_derp_map(text, checks);
  if (!map) return map.error().wrap(src);
  return map;
}

}  // namespace derp
