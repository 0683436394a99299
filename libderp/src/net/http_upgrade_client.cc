#include "net/http_upgrade_client.h"

#include <array>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <sstream>

#include "net/error_text.h"

namespace derp::net {

namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxErrorBody = 64 * 1024;

std::string first_line(std::string_view body) {
  size_t end = body.find_first_of("\r\n");
  std::string line(body.substr(0, end));
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

// The kHttp error for a non-101 answer, with its status (built outside the coroutine: GCC 12
// warns about an Error local in the coroutine frame).
constexpr const char* kUseHttps = "the port speaks TLS: use https://";

Error refused_error(unsigned status, const std::string& where, const std::string& text) {
  Error e(ErrorKind::kHttp, "HTTP " + std::to_string(status) + " from " + where + ": " + text);
  e.http_status = static_cast<int>(status);
  // Go's (and derp-serve's) TLS listeners answer plain HTTP with this 400.
  if (text.find("HTTP request to an HTTPS server") != std::string::npos) e.hint = kUseHttps;
  return e;
}

Error with_hint(Error e, std::string hint) {
  if (!hint.empty()) e.hint = std::move(hint);
  return e;
}

Error answered_in_tls(const std::string& where) {
  Error e(ErrorKind::kHttp, "HTTP upgrade with " + where + ": the server answered in TLS, not HTTP");
  e.hint = kUseHttps;
  return e;
}

// A TLS record header (alert 0x15 or handshake 0x16, version 3.x): what a TLS server that does
// not answer plain HTTP the Go way sends back to a plain-HTTP request.
bool looks_like_tls_record(const beast::flat_buffer& buf) {
  if (buf.size() < 2) return false;
  const auto* p = static_cast<const uint8_t*>(buf.data().data());
  return (p[0] == 0x15 || p[0] == 0x16) && p[1] == 0x03;
}

}  // namespace

std::string build_upgrade_request(const DerpUrl& url, std::string_view user_agent,
                                  bool fast_start, std::string_view ideal_node) {
  http::request<http::empty_body> req{http::verb::get, url.target, 11};
  req.set(http::field::host, url.host_header());
  req.set(http::field::user_agent, user_agent);
  req.set(http::field::connection, "Upgrade");
  if (fast_start) req.set("Derp-Fast-Start", "1");
  if (!ideal_node.empty()) req.set("Ideal-Node", ideal_node);
  req.set(http::field::upgrade, "DERP");
  std::ostringstream out;
  out << req;
  return out.str();
}

asio::awaitable<Result<UpgradeResponse>> http_upgrade(ClientStream& stream, const DerpUrl& url,
                                                      std::string_view user_agent,
                                                      DialDeadline& deadline,
                                                      std::string_view ideal_node,
                                                      unsigned* status_out) {
  const std::string where = url.host_port();
  deadline.on_expiry([&stream] { stream.close(); });
  auto timeout = [&] {
    return Error(ErrorKind::kTimeout, "connect to " + where + ": timed out after " +
                                          format_duration(deadline.budget()) +
                                          " (waiting for the HTTP upgrade response)");
  };
  auto io_error = [&](const char* what, const boost::system::error_code& ec) {
    if (ec == asio::error::eof) {
      return Error(
          ErrorKind::kHttp,
          std::string("HTTP upgrade with ") + where + ": server closed the connection " + what, ec);
    }
    return Error(ErrorKind::kIo,
                 std::string("HTTP upgrade with ") + where + ": " + lower_first(ec.message()), ec);
  };

  std::string request = build_upgrade_request(url, user_agent, false, ideal_node);
  auto [wec, wn] = co_await stream.write_all(asio::buffer(request));
  (void)wn;
  if (deadline.expired()) co_return timeout();
  if (wec) co_return io_error("while we sent the request", wec);

  beast::flat_buffer buf;
  http::response_parser<http::empty_body> head;
  while (!head.is_header_done()) {
    auto space = buf.prepare(kReadChunk);
    auto [rec, n] = co_await stream.read_some(space);
    if (deadline.expired()) co_return timeout();
    if (rec) {
      // A TLS server may close a plain-HTTP connection without an HTTP answer.
      co_return with_hint(io_error("before sending a response head", rec),
                          !url.tls && buf.size() == 0 && rec == asio::error::eof
                              ? std::string(kUseHttps) + " if this is a TLS port"
                              : std::string());
    }
    buf.commit(n);
    if (!url.tls && looks_like_tls_record(buf)) co_return answered_in_tls(where);
    boost::system::error_code pec;
    size_t used = head.put(buf.data(), pec);
    buf.consume(used);
    if (pec && pec != http::error::need_more) {
      co_return Error(ErrorKind::kHttp,
                      "bad HTTP response from " + where + ": " + lower_first(pec.message()), pec);
    }
  }

  const unsigned status = head.get().result_int();
  if (status_out) *status_out = status;
  if (status == 101) {
    UpgradeResponse out;
    auto data = buf.data();
    const auto* p = static_cast<const uint8_t*>(data.data());
    out.leftover.assign(p, p + data.size());
    auto it = head.get().find("Derp-Public-Key");
    if (it != head.get().end()) out.derp_public_key = std::string(it->value());
    deadline.on_expiry(nullptr);
    co_return out;
  }

  // Not upgraded: read (some of) the body so the message says why ("DERP requires connection
  // upgrade"). Bounded by the same deadline; a broken body just gives a shorter message.
  std::string reason(head.get().reason());
  http::response_parser<http::string_body> body(std::move(head));
  body.body_limit(kMaxErrorBody);
  body.eager(true);
  boost::system::error_code pec;
  while (!body.is_done() && !pec) {
    if (buf.size() > 0) {
      size_t used = body.put(buf.data(), pec);
      buf.consume(used);
      if (pec == http::error::need_more) pec = {};
      if (pec || body.is_done()) break;
    }
    auto space = buf.prepare(kReadChunk);
    auto [rec, n] = co_await stream.read_some(space);
    if (deadline.expired() || rec) {
      if (rec == asio::error::eof) body.put_eof(pec);
      break;
    }
    buf.commit(n);
  }
  deadline.on_expiry(nullptr);
  std::string text = first_line(body.get().body());
  if (text.empty()) text = reason.empty() ? "upgrade refused" : reason;
  co_return refused_error(status, where, text);
}

}  // namespace derp::net
