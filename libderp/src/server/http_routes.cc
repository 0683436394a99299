#include "server/http_routes.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/beast/core/string.hpp>
#include <ctime>

#include "codec/captive_challenge.h"
#include "server/metrics.h"
#include "server/status_page.h"

namespace derp::server {

namespace beast = boost::beast;

namespace {

constexpr std::string_view kHomePage =
    "<html><body>\n"
    "<h1>DERP</h1>\n"
    "<p>\n"
    "  This is a\n"
    "  <a href=\"https://tailscale.com/\">Tailscale</a>\n"
    "  <a href=\"https://pkg.go.dev/tailscale.com/derp\">DERP</a>\n"
    "  server.\n"
    "</p>\n";

std::string_view path_of(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

// Go's http.Error: the body plus a newline, text/plain, nosniff; Date and Content-Length follow
// in the order Go's server writes them.
Response text_error(const Request& req, http::status status, std::string_view body) {
  Response res{status, req.version()};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set("X-Content-Type-Options", "nosniff");
  res.set(http::field::date, http_date_now());
  res.body() = std::string(body) + "\n";
  res.prepare_payload();
  res.keep_alive(req.keep_alive());
  return res;
}

Response probe(const Request& req) {
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    return text_error(req, http::status::method_not_allowed, "bogus probe method");
  }
  Response res{http::status::ok, req.version()};
  res.set(http::field::access_control_allow_origin, "*");
  res.set(http::field::date, http_date_now());
  // Go adds Content-Length: 0 to an empty GET reply but none to HEAD.
  if (req.method() == http::verb::get) res.content_length(0);
  res.keep_alive(req.keep_alive());
  return res;
}

Response no_content(const Request& req) {
  Response res{http::status::no_content, req.version()};
  // Header order is Go's (its header map is written sorted), then Date.
  res.set(http::field::cache_control,
          "no-cache, no-store, must-revalidate, no-transform, max-age=0");
  auto it = req.find("X-Tailscale-Challenge");
  if (it != req.end()) {
    if (auto reply = captive_challenge_response(std::string_view(it->value()))) {
      res.set("X-Tailscale-Response", *reply);
    }
  }
  res.set(http::field::date, http_date_now());
  res.keep_alive(req.keep_alive());
  return res;
}

Response text_ok(const Request& req, std::string_view content_type, std::string_view body,
                 bool type_first) {
  Response res{http::status::ok, req.version()};
  if (type_first) res.set(http::field::content_type, content_type);
  res.set(http::field::date, http_date_now());
  res.content_length(body.size());
  if (!type_first) res.set(http::field::content_type, content_type);
  if (req.method() != http::verb::head) res.body() = std::string(body);
  res.keep_alive(req.keep_alive());
  return res;
}

// "%20" and "+" decoded; a bad escape stays as it is.
std::string url_decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string_view query_of(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

// POST /debug/fault?SPEC (or SPEC as the body): one fault-injection spec (server/faults.h).
Response fault(const Request& req, const RouteContext& ctx) {
  if (req.method() != http::verb::post) {
    return text_error(req, http::status::method_not_allowed, "use POST /debug/fault?SPEC");
  }
  std::string spec = url_decode(query_of(req.target()));
  if (spec.empty()) spec = req.body();
  while (!spec.empty() && (spec.back() == '\n' || spec.back() == '\r')) spec.pop_back();
  auto done = ctx.hooks->fault(spec);
  if (!done) return text_error(req, http::status::bad_request, done.error().message);
  return text_ok(req, "text/plain; charset=utf-8", *done + "\n", true);
}

// derper's /bootstrap-dns: JSON, never kept alive.
Response bootstrap_dns(const Request& req, const RouteContext& ctx) {
  std::string q;
  std::string_view query = query_of(req.target());
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view kv = query.substr(0, amp);
    if (kv.starts_with("q=")) q = url_decode(kv.substr(2));
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
  }
  Response res = text_ok(req, "application/json", ctx.hooks->bootstrap_dns(q), true);
  res.keep_alive(false);
  return res;
}

constexpr std::string_view kDebugIndexHead =
    "<html><body>\n"
    "<h1>DERP debug</h1>\n"
    "<a href=\"/debug/vars\">/debug/vars</a> (expvar JSON)<br>\n"
    "<a href=\"/debug/varz\">/debug/varz</a> (Prometheus)<br>\n";
constexpr std::string_view kDebugIndexFault =
    "POST /debug/fault?SPEC: fault injection (see docs/CLI.md)<br>\n";
constexpr std::string_view kDebugIndexTail = "</body></html>\n";

bool fault_endpoint_on(const RouteContext& ctx) { return ctx.hooks && ctx.hooks->fault; }

Response debug(const Request& req, std::string_view path, const RouteContext& ctx) {
  // tsweb's access rule and message: nothing under /debug/ leaks to untrusted peers.
  if (!ctx.debug_allowed) return text_error(req, http::status::forbidden, "debug access denied");
  if (path == "/debug/" || path == "/debug") {
    std::string index(kDebugIndexHead);
    if (fault_endpoint_on(ctx)) index += kDebugIndexFault;
    index += kDebugIndexTail;
    return text_ok(req, "text/html; charset=utf-8", index, true);
  }
  if (ctx.counters && path == "/debug/vars") {
    return text_ok(req, "application/json; charset=utf-8", render_expvar_json(ctx.counters()),
                   true);
  }
  if (ctx.counters && path == "/debug/varz") {
    return text_ok(req, kPrometheusContentType, render_prometheus(ctx.counters()), true);
  }
  if (path == "/debug/fault") {
    if (fault_endpoint_on(ctx)) return fault(req, ctx);
    return text_error(req, http::status::not_found,
                      "fault injection is off: start the relay with --fault-endpoint");
  }
  return text_error(req, http::status::not_found, "404 page not found");
}

// Go's http.Redirect to an absolute URL with 302: Location with non-ASCII bytes %-escaped,
// and for GET a short HTML body naming the link (HEAD: the type, no body).
Response redirect(const Request& req, std::string_view url) {
  std::string location;
  for (unsigned char c : url) {
    if (c >= 0x80) {
      location += fmt::format("%{:02X}", c);
    } else {
      location += static_cast<char>(c);
    }
  }
  std::string escaped;
  for (char c : url) {
    switch (c) {
      case '&':
        escaped += "&amp;";
        break;
      case '<':
        escaped += "&lt;";
        break;
      case '>':
        escaped += "&gt;";
        break;
      case '"':
        escaped += "&#34;";
        break;
      case '\'':
        escaped += "&#39;";
        break;
      default:
        escaped += c;
    }
  }
  const bool get = req.method() == http::verb::get;
  const bool head = req.method() == http::verb::head;
  Response res{http::status::found, req.version()};
  if (get || head) res.set(http::field::content_type, "text/html; charset=utf-8");
  res.set(http::field::location, location);
  res.set(http::field::date, http_date_now());
  if (get) res.body() = "<a href=\"" + escaped + "\">Found</a>.\n\n";
  if (!head) res.content_length(res.body().size());
  res.keep_alive(req.keep_alive());
  return res;
}

// "/" as derper's --home says: its home text (here followed by the live status section),
// an empty page ("blank"), or a redirect.
Response home(const Request& req, const RouteContext& ctx) {
  const std::string_view mode = ctx.hooks ? std::string_view(ctx.hooks->home) : std::string_view();
  if (mode == "blank") {
    Response res = text_ok(req, "text/html; charset=utf-8", "", true);
    // Go's server sends Content-Length: 0 for an empty GET answer but none for HEAD.
    if (req.method() == http::verb::head) res.erase(http::field::content_length);
    return res;
  }
  if (!mode.empty()) return redirect(req, mode);
  std::string page(kHomePage);
  if (ctx.hooks && ctx.hooks->status_json) page += kStatusSection;
  if (ctx.debug_allowed) page += "<p>Debug info at <a href='/debug/'>/debug/</a>.</p>\n";
  page += "</body>\n</html>\n";
  return text_ok(req, "text/html; charset=utf-8", page, true);
}

}  // namespace

Upgrade classify_upgrade(const http::request_header<>& req) {
  auto up = req[http::field::upgrade];
  if (beast::iequals(up, "derp")) return Upgrade::kDerp;
  if (beast::iequals(up, "websocket")) {
    auto proto = req[http::field::sec_websocket_protocol];
    if (std::string_view(proto).find("derp") != std::string_view::npos) {
      return Upgrade::kWebSocketDerp;
    }
    return Upgrade::kDerp;  // legacy clients sent "websocket" for a raw DERP stream
  }
  return Upgrade::kNone;
}

bool wants_fast_start(const http::request_header<>& req) { return req["Derp-Fast-Start"] == "1"; }

Response route_http(const Request& req, const RouteContext& ctx) {
  const std::string_view path = path_of(req.target());
  if (path == "/debug" || path.starts_with("/debug/")) return debug(req, path, ctx);
  if (path == "/derp") {
    return text_error(req, http::status::upgrade_required, "DERP requires connection upgrade");
  }
  if (path == "/derp/probe" || path == "/derp/latency-check") return probe(req);
  if (path == "/generate_204") return no_content(req);
  if (path == "/favicon.ico") {
    // Browsers ask for it whatever the page says (its <link> can only be in <body>, after
    // derper's text): 204 rather than a 404 in every status-page viewer's console.
    Response res{http::status::no_content, req.version()};
    res.set(http::field::cache_control, "max-age=86400");
    res.set(http::field::date, http_date_now());
    res.keep_alive(req.keep_alive());
    return res;
  }
  if (path == "/robots.txt") {
    return text_ok(req, "text/plain; charset=utf-8", "User-agent: *\nDisallow: /\n", false);
  }
  if (path == "/bootstrap-dns" && ctx.hooks && ctx.hooks->bootstrap_dns) {
    return bootstrap_dns(req, ctx);
  }
  if (path == "/") return home(req, ctx);
  if (path == "/status.json" && ctx.hooks && ctx.hooks->status_json) {
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      return text_error(req, http::status::method_not_allowed, "use GET /status.json");
    }
    Response res =
        text_ok(req, "application/json", ctx.hooks->status_json(ctx.debug_allowed), true);
    res.set(http::field::cache_control, "no-store");
    return res;
  }
  return text_error(req, http::status::not_found, "404 page not found");
}

Response bad_request_response(std::string_view why) {
  Response res{http::status::bad_request, 11};
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set(http::field::connection, "close");
  res.body() = "400 Bad Request: " + std::string(why) + "\n";
  res.prepare_payload();
  return res;
}

std::string switching_protocols_head(const NodePublic& server) {
  std::string s =
      "HTTP/1.1 101 Switching Protocols\r\n"
      "Upgrade: DERP\r\n"
      "Connection: Upgrade\r\n"
      "Derp-Version: 2\r\n"
      "Derp-Public-Key: ";
  s += server.hex();
  s += "\r\n\r\n";
  return s;
}

std::string http_date_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[40];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

}  // namespace derp::server
