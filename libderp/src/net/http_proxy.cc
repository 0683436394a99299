#include "net/http_proxy.h"

#include <openssl/evp.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/write.hpp>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <sstream>

#include "net/error_text.h"
#include "net/awaitable.h"

namespace derp::net {

namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(std::max(n, 0)));
  return out;
}

// %XX escapes in the userinfo of a URL.
std::string percent_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int v = 0;
      auto r = std::from_chars(s.data() + i + 1, s.data() + i + 3, v, 16);
      if (r.ec == std::errc() && r.ptr == s.data() + i + 3) {
        out.push_back(static_cast<char>(v));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

const char* env(const char* upper, const char* lower_name) {
  const char* v = std::getenv(upper);
  if (v && *v) return v;
  v = std::getenv(lower_name);
  return v && *v ? v : nullptr;
}

bool no_proxy_matches(std::string_view list, const std::string& host) {
  const std::string h = lower(host);
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string_view::npos) end = list.size();
    std::string entry = lower(list.substr(start, end - start));
    entry.erase(0, entry.find_first_not_of(" \t"));
    entry.erase(entry.find_last_not_of(" \t") + 1);
    start = end + 1;
    if (entry.empty()) continue;
    if (entry == "*") return true;
    // Drop a port; "[::1]" brackets too.
    if (entry.front() == '[') {
      auto close = entry.find(']');
      if (close != std::string::npos) entry = entry.substr(1, close - 1);
    } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
      entry = entry.substr(0, entry.find(':'));
    }
    if (!entry.empty() && entry.front() == '.') entry.erase(0, 1);
    if (entry.empty()) continue;
    if (h == entry) return true;
    if (h.size() > entry.size() && h.ends_with(entry) && h[h.size() - entry.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string ProxyConfig::host_port() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

Result<ProxyConfig> parse_proxy_url(std::string_view text) {
  auto bad = [&](std::string why) {
    return Error(ErrorKind::kUsage, "bad proxy URL \"" + std::string(text) + "\": " + why);
  };
  std::string_view rest = text;
  if (auto sep = rest.find("://"); sep != std::string_view::npos) {
    std::string scheme = lower(rest.substr(0, sep));
    if (scheme != "http") return bad("unsupported scheme \"" + scheme + "\" (want http://)");
    rest.remove_prefix(sep + 3);
  }
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    if (rest.substr(slash) != "/") return bad("a proxy URL has no path");
    rest = rest.substr(0, slash);
  }
  ProxyConfig p;
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string userinfo = percent_decode(rest.substr(0, at));
    if (userinfo.find(':') == std::string::npos) userinfo += ":";
    p.authorization = "Basic " + base64(userinfo);
    rest.remove_prefix(at + 1);
  }
  std::string_view port_text;
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close == std::string_view::npos) return bad("unclosed [");
    p.host = std::string(rest.substr(1, close - 1));
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("junk after ]");
      port_text = rest.substr(1);
    }
  } else {
    auto colon = rest.find(':');
    p.host = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) port_text = rest.substr(colon + 1);
  }
  if (p.host.empty()) return bad("host missing");
  if (!port_text.empty()) {
    unsigned v = 0;
    auto r = std::from_chars(port_text.data(), port_text.data() + port_text.size(), v);
    if (r.ec != std::errc() || r.ptr != port_text.data() + port_text.size() || v == 0 ||
        v > 65535) {
      return bad("bad port \"" + std::string(port_text) + "\"");
    }
    p.port = static_cast<uint16_t>(v);
  }
  p.display = "http://" + p.host_port();
  return p;
}

Result<std::optional<ProxyConfig>> proxy_from_environment(const std::string& host, bool tls) {
  const char* value = tls ? env("HTTPS_PROXY", "https_proxy") : env("HTTP_PROXY", "http_proxy");
  if (!value) return std::optional<ProxyConfig>();
  if (lower(host) == "localhost") return std::optional<ProxyConfig>();
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (!ec && ip.is_loopback()) return std::optional<ProxyConfig>();
  if (const char* no = env("NO_PROXY", "no_proxy"); no && no_proxy_matches(no, host)) {
    return std::optional<ProxyConfig>();
  }
  auto p = parse_proxy_url(value);
  if (!p) return p.error().wrap(tls ? "HTTPS_PROXY" : "HTTP_PROXY");
  return std::optional<ProxyConfig>(std::move(*p));
}

asio::awaitable<Result<void>> proxy_connect(asio::ip::tcp::socket& socket,
                                            const ProxyConfig& proxy, const std::string& host,
                                            uint16_t port, DialDeadline& deadline) {
  const std::string target =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  const std::string what = "proxy " + proxy.display + ": CONNECT " + target;
  auto timeout = [&] {
    return Error(ErrorKind::kTimeout, what + ": timed out after " +
                                          format_duration(deadline.budget()));
  };
  deadline.on_expiry([&socket] {
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  http::request<http::empty_body> req{http::verb::connect, target, 11};
  req.set(http::field::host, target);
  req.set(http::field::user_agent, "libderp/" DERP_VERSION_STRING);
  if (!proxy.authorization.empty()) req.set(http::field::proxy_authorization, proxy.authorization);
  std::ostringstream out;
  out << req;
  const std::string bytes = out.str();
  auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(bytes), kTuple);
  (void)wn;
  if (deadline.expired()) co_return timeout();
  if (wec) co_return Error(ErrorKind::kIo, what + ": " + lower_first(wec.message()), wec);

  // Read byte by byte-ish chunks but never past the head: what follows belongs to the tunnel
  // (a proxy sends nothing more before we speak, but stay exact anyway).
  boost::beast::flat_buffer buf;
  http::response_parser<http::empty_body> head;
  head.skip(true);  // a CONNECT 2xx has no body
  while (!head.is_header_done()) {
    char c;
    auto [rec, n] = co_await socket.async_read_some(asio::buffer(&c, 1), kTuple);
    if (deadline.expired()) co_return timeout();
    if (rec) {
      std::string why = rec == asio::error::eof ? "the proxy closed the connection"
                                                : lower_first(rec.message());
      co_return Error(rec == asio::error::eof ? ErrorKind::kHttp : ErrorKind::kIo,
                      what + ": " + why, rec);
    }
    auto space = buf.prepare(1);
    *static_cast<char*>(space.data()) = c;
    buf.commit(n);
    boost::system::error_code pec;
    size_t used = head.put(buf.data(), pec);
    buf.consume(used);
    if (pec && pec != http::error::need_more) {
      co_return Error(ErrorKind::kHttp, what + ": bad HTTP from the proxy: " +
                                            lower_first(pec.message()), pec);
    }
  }
  deadline.on_expiry(nullptr);
  const unsigned status = head.get().result_int();
  if (status < 200 || status > 299) {
    co_return Error(ErrorKind::kHttp, what + " answered " + std::to_string(status) + " " +
                                          std::string(head.get().reason()));
  }
  co_return Result<void>();
}

}  // namespace derp::net
