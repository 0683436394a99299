#include "net/dial_tcp.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cctype>

namespace derp::net {

namespace asio = boost::asio;
using asio::ip::tcp;

std::string lower_first(std::string s) {
  // Only lower a leading capital that starts a plain word ("Connection refused"), not an
  // acronym ("EOF").
  if (s.size() >= 2 && std::isupper(static_cast<unsigned char>(s[0])) &&
      std::islower(static_cast<unsigned char>(s[1]))) {
    s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  }
  return s;
}

std::string format_duration(std::chrono::milliseconds d) {
  auto ms = d.count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  if (ms > 1000) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3gs", static_cast<double>(ms) / 1000.0);
    return buf;
  }
  return std::to_string(ms) + "ms";
}

asio::awaitable<Result<tcp::socket>> dial_tcp(const std::string& host, uint16_t port,
                                              const std::string& where, DialDeadline& deadline) {
  auto ex = co_await asio::this_coro::executor;
  auto timeout = [&](const char* step) {
    return Error(ErrorKind::kTimeout, "connect to " + where + ": timed out after " +
                                          format_duration(deadline.budget()) + " (" + step + ")");
  };

  tcp::resolver resolver(ex);
  deadline.on_expiry([&resolver] { resolver.cancel(); });
  auto [rec, results] =
      co_await resolver.async_resolve(host, std::to_string(port), tcp::resolver::numeric_service,
                                      asio::as_tuple(asio::use_awaitable));
  deadline.on_expiry(nullptr);
  if (deadline.expired()) co_return timeout("resolving");
  if (rec) {
    co_return Error(ErrorKind::kDns, "resolve " + host + ": " + lower_first(rec.message()), rec);
  }
  if (results.empty()) {
    co_return Error(ErrorKind::kDns, "resolve " + host + ": no addresses");
  }

  tcp::socket socket(ex);
  deadline.on_expiry([&socket] {
    boost::system::error_code ignored;
    socket.close(ignored);
  });
  auto [cec, ep] =
      co_await asio::async_connect(socket, results, asio::as_tuple(asio::use_awaitable));
  (void)ep;
  deadline.on_expiry(nullptr);
  if (deadline.expired()) co_return timeout("TCP connect");
  if (cec) {
    co_return Error(ErrorKind::kConnect, "connect to " + where + ": " + lower_first(cec.message()),
                    cec);
  }
  co_return std::move(socket);
}

}  // namespace derp::net
