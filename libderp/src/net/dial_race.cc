#include "net/dial_race.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <tuple>

#include "net/error_text.h"
#include "net/endpoint_text.h"
#include "net/awaitable.h"

namespace derp::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

struct RaceState {
  explicit RaceState(asio::any_io_executor ex, size_t n) : wake(ex), pending(n), errors(n) {
    wake.expires_at(Clock::time_point::max());
    cancels.resize(n);
    kicks.resize(n);
  }
  asio::steady_timer wake;  // cancelled when the main coroutine should look again
  size_t pending;
  bool done = false;            // a winner exists or the race was abandoned
  bool budget_expired = false;  // the per-race budget ran out
  std::optional<DialResult> winner;
  std::vector<std::optional<Error>> errors;
  std::vector<std::function<void()>> cancels;  // stop attempt i
  std::vector<std::function<void()>> kicks;    // end attempt i's start delay

  void cancel_all() {
    done = true;
    for (auto& c : cancels) {
      if (c) c();
    }
  }
};

const char* family_word(FamilyFilter f) {
  switch (f) {
    case FamilyFilter::kV4: return "IPv4 ";
    case FamilyFilter::kV6: return "IPv6 ";
    case FamilyFilter::kAny: break;
  }
  return "";
}

bool family_ok(const asio::ip::address& a, FamilyFilter f) {
  if (f == FamilyFilter::kV4) return a.is_v4();
  if (f == FamilyFilter::kV6) return a.is_v6();
  return true;
}

asio::awaitable<void> run_attempt(std::shared_ptr<RaceState> st, size_t i, DialAttempt a,
                                  uint16_t port, DnsCache* cache) {
  auto ex = co_await asio::this_coro::executor;
  auto resolver = std::make_shared<tcp::resolver>(ex);
  auto sock = std::make_shared<tcp::socket>(ex);
  auto delay = std::make_shared<asio::steady_timer>(ex);
  st->cancels[i] = [resolver, sock, delay] {
    boost::system::error_code ignored;
    resolver->cancel();
    delay->cancel();
    sock->close(ignored);
  };
  st->kicks[i] = [delay] { delay->cancel(); };

  auto finish = [&](std::optional<Error> err) {
    if (err) {
      st->errors[i] = std::move(err);
      // A failed attempt lets the delayed ones start now (happy eyeballs).
      for (size_t j = 0; j < st->kicks.size(); ++j) {
        if (j != i && st->kicks[j]) st->kicks[j]();
      }
    }
    st->cancels[i] = nullptr;
    st->kicks[i] = nullptr;
    if (--st->pending == 0 || st->winner) st->wake.cancel();
  };

  if (a.delay.count() > 0) {
    delay->expires_after(a.delay);
    co_await delay->async_wait(kTuple);  // cancelled = start now (or the race is over)
  }
  if (st->done) co_return finish(Error(ErrorKind::kConnect, "dial of " + a.host + " cancelled"));

  DialResult out(tcp::socket{ex});
  std::vector<asio::ip::address> addrs;
  boost::system::error_code aec;
  auto literal = asio::ip::make_address(a.host, aec);
  if (!aec) {
    if (!family_ok(literal, a.family)) {
      co_return finish(Error(ErrorKind::kConnect, std::string("connect to ") + a.host +
                                                      ": not an " + family_word(a.family) +
                                                      "address"));
    }
    addrs.push_back(literal);
  } else if (auto hit = cache ? cache->get(a.host, a.family) : std::nullopt) {
    addrs = std::move(*hit);
    out.dns_cached = true;
  } else {
    const auto t0 = Clock::now();
    boost::system::error_code rec;
    tcp::resolver::results_type results;
    if (a.family == FamilyFilter::kV4) {
      std::tie(rec, results) = co_await resolver->async_resolve(
          tcp::v4(), a.host, std::to_string(port), tcp::resolver::numeric_service, kTuple);
    } else if (a.family == FamilyFilter::kV6) {
      std::tie(rec, results) = co_await resolver->async_resolve(
          tcp::v6(), a.host, std::to_string(port), tcp::resolver::numeric_service, kTuple);
    } else {
      std::tie(rec, results) = co_await resolver->async_resolve(
          a.host, std::to_string(port), tcp::resolver::numeric_service, kTuple);
    }
    out.dns = Clock::now() - t0;
    if (st->done) co_return finish(Error(ErrorKind::kDns, "resolve " + a.host + ": cancelled"));
    if (rec) {
      co_return finish(Error(ErrorKind::kDns,
                             "resolve " + a.host + (a.family == FamilyFilter::kAny ? "" : " (") +
                                 (a.family == FamilyFilter::kAny
                                      ? std::string()
                                      : std::string(family_word(a.family)) + "only)") +
                                 ": " + lower_first(rec.message()),
                             rec));
    }
    for (const auto& r : results) {
      if (family_ok(r.endpoint().address(), a.family)) addrs.push_back(r.endpoint().address());
    }
    if (addrs.empty()) {
      co_return finish(Error(ErrorKind::kDns, "resolve " + a.host + ": no " +
                                                  family_word(a.family) + "addresses"));
    }
    if (cache) cache->put(a.host, a.family, addrs);
  }

  const auto t1 = Clock::now();
  boost::system::error_code cec;
  std::string target;
  for (const auto& addr : addrs) {
    if (st->done) break;
    target = endpoint_string(addr, port);
    boost::system::error_code ignored;
    sock->close(ignored);
    std::tie(cec) = co_await sock->async_connect(tcp::endpoint(addr, port), kTuple);
    if (!cec) break;
  }
  out.tcp = Clock::now() - t1;
  if (st->done) {
    boost::system::error_code ignored;
    sock->close(ignored);
    co_return finish(Error(ErrorKind::kConnect, "connect to " + target + ": cancelled"));
  }
  if (cec) {
    co_return finish(
        Error(ErrorKind::kConnect, "connect to " + target + ": " + lower_first(cec.message()), cec));
  }
  out.remote = target;
  out.socket = std::move(*sock);
  st->winner = std::move(out);
  st->done = true;
  for (size_t j = 0; j < st->cancels.size(); ++j) {
    if (j != i && st->cancels[j]) st->cancels[j]();
  }
  finish(std::nullopt);
}

}  // namespace

asio::awaitable<Result<DialResult>> dial_race(std::vector<DialAttempt> attempts, uint16_t port,
                                              std::string where, DialDeadline& deadline,
                                              std::chrono::milliseconds budget, DnsCache* cache) {
  auto ex = co_await asio::this_coro::executor;
  if (attempts.empty()) co_return Error(ErrorKind::kConnect, "connect to " + where + ": no address to dial");
  auto st = std::make_shared<RaceState>(ex, attempts.size());
  for (size_t i = 0; i < attempts.size(); ++i) {
    asio::co_spawn(ex, run_attempt(st, i, attempts[i], port, cache), asio::detached);
  }
  asio::steady_timer budget_timer(ex);
  if (budget.count() > 0) {
    budget_timer.expires_after(budget);
    budget_timer.async_wait([st](const boost::system::error_code& ec) {
      if (ec || st->done) return;
      st->budget_expired = true;
      st->cancel_all();
    });
  }
  deadline.on_expiry([st] { st->cancel_all(); });
  while (st->pending > 0 && !st->winner) co_await st->wake.async_wait(kTuple);
  deadline.on_expiry(nullptr);
  budget_timer.cancel();
  if (st->winner) {
    DialResult r = std::move(*st->winner);
    st->winner.reset();
    co_return r;
  }
  if (deadline.expired()) {
    co_return Error(ErrorKind::kTimeout, "connect to " + where + ": timed out after " +
                                             format_duration(deadline.budget()) + " (TCP dial)");
  }
  if (st->budget_expired) {
    co_return Error(ErrorKind::kTimeout, "connect to " + where + ": timed out after " +
                                             format_duration(budget) + " (node dial)");
  }
  for (auto& e : st->errors) {
    if (e) co_return *e;
  }
  co_return Error(ErrorKind::kConnect, "connect to " + where + ": failed");
}

}  // namespace derp::net
