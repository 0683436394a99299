// derp::dial_region_tls and TlsConnection: Go's derphttp Client.DialRegionTLS. The region's
// nodes are dialed by the same code as a region client's connect (client/dial.cc), stopping
// after TLS. Each blocking call runs the connection's private io_context on the calling thread
// until its one operation (bounded by a DialDeadline) completes.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_future.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>

#include "client/dial.h"
#include "derp/client.h"
#include "net/dial_deadline.h"
#include "net/dns_cache.h"
#include "net/error_text.h"

namespace derp {

namespace asio = boost::asio;
using DialTlsClock = std::chrono::steady_clock;

namespace {

// co_spawn with use_future wants default-constructible results.
struct DialTlsOutcome {
  std::optional<Result<client::DialedStream>> result;
};
struct TlsIoOutcome {
  net::IoResult io{};
  bool expired = false;
};

// How a stop request reaches the dial: posted to the dial's io_context, where the deadline
// lives. Touched only on that io_context's thread (the caller's, inside run()).
struct DialTlsStop {
  net::DialDeadline* deadline = nullptr;  // the dial in progress
  bool requested = false;
};

asio::awaitable<DialTlsOutcome> run_region_tls_dial(const client::DialSettings& settings,
                                                    std::chrono::milliseconds timeout,
                                                    std::shared_ptr<DialTlsStop> stop) {
  auto ex = co_await asio::this_coro::executor;
  net::DialDeadline deadline(ex, timeout);
  stop->deadline = &deadline;
  if (stop->requested) deadline.abort();
  auto r = co_await client::dial_tls_only(settings, deadline);
  stop->deadline = nullptr;
  DialTlsOutcome out;
  out.result.emplace(std::move(r));
  co_return out;
}

}  // namespace

struct TlsConnection::Impl {
  asio::io_context io;  // declared first: destroyed after the stream bound to it
  std::unique_ptr<net::ClientStream> stream;
  DERPNode node;
  ConnectReport report;
  TlsInfo info;
  std::string where;  // "node 900b (127.0.0.1:443)"
  bool closed = false;

  template <typename T>
  T run(asio::awaitable<T> op) {
    io.restart();
    auto fut = asio::co_spawn(io, std::move(op), asio::use_future);
    io.run();
    return fut.get();
  }

  // One read or write, closing the stream when `timeout` expires first.
  asio::awaitable<TlsIoOutcome> io_op(bool reading, asio::mutable_buffer rbuf,
                                      asio::const_buffer wbuf, std::chrono::milliseconds timeout) {
    auto ex = co_await asio::this_coro::executor;
    net::DialDeadline deadline(ex, timeout);
    deadline.on_expiry([s = stream.get()] { s->close(); });
    TlsIoOutcome out;
    out.io = reading ? co_await stream->read_some(rbuf) : co_await stream->write_all(wbuf);
    deadline.on_expiry(nullptr);
    out.expired = deadline.expired();
    co_return out;
  }

  Result<size_t> finish(const char* verb, const TlsIoOutcome& r,
                        std::chrono::milliseconds timeout) {
    if (r.expired) {
      closed = true;
      return Error(ErrorKind::kTimeout, std::string(verb) + " " + where + ": nothing within " +
                                            net::format_duration(timeout) +
                                            " (the connection is closed)");
    }
    if (r.io.first) {
      closed = true;
      stream->close();
      std::string why = r.io.first == asio::error::eof ? std::string("connection closed by server")
                                                       : net::lower_first(r.io.first.message());
      return Error(ErrorKind::kIo, std::string(verb) + " " + where + ": " + why, r.io.first);
    }
    return r.io.second;
  }
};

TlsConnection::TlsConnection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TlsConnection::~TlsConnection() { close(); }

Result<size_t> TlsConnection::read_some(std::span<uint8_t> buf, std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  if (d.closed) return Error(ErrorKind::kClosed, "read from " + d.where + ": connection closed");
  if (buf.empty()) return size_t{0};
  auto r = d.run(d.io_op(true, asio::buffer(buf.data(), buf.size()), {}, timeout));
  return d.finish("read from", r, timeout);
}

Result<void> TlsConnection::write(std::span<const uint8_t> data,
                                  std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  if (d.closed) return Error(ErrorKind::kClosed, "write to " + d.where + ": connection closed");
  auto r = d.run(d.io_op(false, {}, asio::buffer(data.data(), data.size()), timeout));
  auto n = d.finish("write to", r, timeout);
  if (!n) return std::move(n).error();
  return {};
}

void TlsConnection::close() {
  if (impl_->closed || !impl_->stream) return;
  impl_->closed = true;
  impl_->stream->close();
}

const DERPNode& TlsConnection::node() const { return impl_->node; }
const TlsInfo& TlsConnection::tls_info() const { return impl_->info; }
const ConnectReport& TlsConnection::report() const { return impl_->report; }

Result<std::unique_ptr<TlsConnection>> dial_region_tls(const DERPRegion& region,
                                                       const TlsDialOptions& options) {
  // The node targets exactly as a region client builds them (TLS context per CertName).
  ClientOptions co;
  co.region = region;
  co.ca_file = options.ca_file;
  co.insecure = options.insecure;
  co.proxy_from_environment = false;  // Go's DialRegionTLS dials nodes directly
  auto targets = client::make_dial_targets(co);
  if (!targets) return std::move(targets).error();

  std::string label = "region " + std::to_string(region.region_id);
  if (!region.region_code.empty()) label += " (" + region.region_code + ")";
  net::DnsCache no_cache(std::chrono::milliseconds(0));
  client::DialSettings settings;
  settings.targets = &*targets;
  settings.region = true;
  settings.region_label = label;
  settings.prefer_ipv6 = options.prefer_ipv6 && options.prefer_ipv6();
  settings.dns_cache = &no_cache;
  if (options.log) settings.log = [&options](const std::string& line) { options.log(line); };

  const Error cancelled(ErrorKind::kClosed, "dial cancelled (stop requested)");
  if (options.stop_token.stop_requested()) return cancelled;
  auto impl = std::make_unique<TlsConnection::Impl>();
  auto stop = std::make_shared<DialTlsStop>();
  std::optional<std::stop_callback<std::function<void()>>> on_stop;
  if (options.stop_token.stop_possible()) {
    // Runs on the requesting thread: hand the abort to the dial's own thread.
    on_stop.emplace(options.stop_token, std::function<void()>([io = &impl->io, stop] {
                      asio::post(*io, [stop] {
                        stop->requested = true;
                        if (stop->deadline) stop->deadline->abort();
                      });
                    }));
  }
  const auto started = DialTlsClock::now();
  auto outcome = impl->run(run_region_tls_dial(settings, options.connect_timeout, stop));
  on_stop.reset();  // waits for a callback running on another thread; none can start after
  if (!*outcome.result) {
    if (stop->requested) return cancelled;
    return std::move(*outcome.result).error();
  }
  client::DialedStream dialed = std::move(**outcome.result);
  impl->stream = std::move(dialed.stream);
  impl->report = std::move(dialed.report);
  impl->report.total = DialTlsClock::now() - started;
  if (dialed.target && dialed.target->node) impl->node = *dialed.target->node;
  if (impl->report.tls_info) impl->info = *impl->report.tls_info;
  impl->where = "node " + impl->node.name + " (" + impl->report.remote_addr + ")";
  return std::unique_ptr<TlsConnection>(new TlsConnection(std::move(impl)));
}

}  // namespace derp
