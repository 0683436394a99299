// derp::Client: lazy connect, a background reader with a bounded queue, serialized writes.
// Threads: API calls block on futures/condition variables; every socket operation runs on the
// client's single io_context thread.
#include "derp/client.h"

#include <sodium.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "client/dial.h"
#include "client/messages.h"
#include "codec/token_bucket.h"
#include "net/client_stream.h"
#include "net/dial_deadline.h"
#include "net/error_text.h"
#include "net/dns_cache.h"
#include "net/http_upgrade_client.h"
#include "net/tls_client.h"
#include "net/url.h"

namespace derp {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

constexpr size_t kReadBufferSize = 64 * 1024;
constexpr const char* kUserAgent = "libderp/" DERP_VERSION_STRING;

Error read_deadline_error(const std::string& where, std::chrono::milliseconds after) {
  return Error(ErrorKind::kTimeout, "read from " + where + ": nothing received for " +
                                        net::format_duration(after) +
                                        " (read deadline; the relay sends keep-alives)");
}

Error closed_error(bool cancelled = false) {
  return cancelled ? Error(ErrorKind::kClosed, "client cancelled (stop requested)")
                   : Error(ErrorKind::kClosed, "client closed");
}

struct WriteOp {
  std::vector<uint8_t> bytes;
  std::shared_ptr<std::promise<error_code>> done;  // null: fire and forget (auto-pong)
};

// One established connection. Fields marked (io) are touched only on the io thread; fields
// marked (mu) are guarded by Client::Impl::mu_.
struct Conn {
  Conn(asio::any_io_executor ex, std::unique_ptr<net::ClientStream> s, FrameReader r)
      : stream(std::move(s)), reader(std::move(r)), space_signal(ex), read_timer(ex) {}

  std::unique_ptr<net::ClientStream> stream;
  uint64_t generation = 0;
  NodePublic server_key;
  std::string where;  // host:port, for messages
  std::string local_addr;
  std::optional<TlsInfo> tls;
  std::string url;  // the URL this connection reached

  FrameReader reader;            // (io)
  std::vector<uint8_t> pending;  // (io) bytes read with the handshake, not yet parsed
  std::vector<uint8_t> read_buf = std::vector<uint8_t>(kReadBufferSize);  // (io)
  std::span<const uint8_t> input;       // (io) unparsed part of pending / read_buf
  std::optional<ReceivedMessage> held;  // (io) decoded, waiting for room in the queue
  std::deque<WriteOp> write_queue;      // (io)
  bool writing = false;                 // (io)
  asio::steady_timer space_signal;      // (io) wakes the reader when the queue has room
  asio::steady_timer read_timer;        // (io) ClientOptions::read_timeout
  Clock::time_point last_read{};        // (io) bytes last arrived, or reading resumed
  bool read_parked = false;             // (io) waiting for queue room: no deadline meanwhile

  bool dead = false;            // (mu)
  std::optional<Error> error;   // (mu) why it died
  bool reader_waiting = false;  // (mu) reader is parked until recv() makes room
  // (mu) §7.6: the token bucket this connection's ServerInfo advertised (none: no pacing).
  std::optional<TokenBucket> bucket;
};

// co_spawn wants a default-constructible result.
struct ConnectOutcome {
  Result<std::shared_ptr<Conn>> result = closed_error();
};

struct PendingPing {
  std::promise<Result<Clock::time_point>> answer;
};

}  // namespace

struct Client::Impl {
  Impl(ClientOptions o, std::vector<client::ServerTarget> t, bool netcheck = false)
      : opts(std::move(o)),
        targets(std::move(t)),
        netcheck_only(netcheck),
        self_pub(opts.private_key.public_key()),
        dns_cache(opts.dns_cache_ttl),
        can_ack_pings(opts.can_ack_pings),
        work(asio::make_work_guard(io)) {
    if (opts.region) {
      region_label = "region " + std::to_string(opts.region->region_id);
      if (!opts.region->region_code.empty()) region_label += " (" + opts.region->region_code + ")";
    }
  }

  ClientOptions opts;
  const std::vector<client::ServerTarget> targets;  // one for a URL client; nodes for a region
  const bool netcheck_only;  // Client::create_netcheck: no targets, only dial_region_tls()
  const NodePublic self_pub;
  std::string region_label;  // "" for a URL client
  net::DnsCache dns_cache;   // (io)
  std::atomic<bool> can_ack_pings;

  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;

  std::mutex connect_mu;  // one connect at a time
  std::atomic<bool> cancelled{false};  // set before closed when the close was a cancellation
  // Requested by close()/cancel(): aborts dial_region_tls() calls in flight (each runs on its
  // caller's thread, outside the client's event loop).
  std::stop_source closing;
  // Calls Client::cancel() when opts.stop_token is requested; reset first in ~Client.
  std::optional<std::stop_callback<std::function<void()>>> stop_cb;

  Error closed_err() const { return closed_error(cancelled.load()); }
  void close(bool cancel);  // Client::close() / cancel()

  mutable std::mutex mu;
  std::condition_variable cv;  // queue, connection death, close
  bool closed = false;
  bool connecting = false;
  std::shared_ptr<Conn> conn;
  uint64_t generation = 0;
  NodePublic server_pub;
  std::optional<bool> preferred;
  std::optional<TlsInfo> last_tls;
  std::optional<ConnectReport> last_report;
  std::string last_url;  // the URL of the last connection ("" before the first)
  std::deque<ReceivedDetail> queue;
  std::map<PingData, std::shared_ptr<PendingPing>> pings;
  std::shared_ptr<net::DialDeadline> dialing;  // (io) the connect in progress
  ClientStats stats;                           // (mu)

  void log(const std::string& line) const {
    if (opts.log) opts.log(line);
  }

  // What messages name when no connection exists: the URL's host:port or the region.
  std::string target_name() const {
    if (netcheck_only) return "no relay (netcheck client)";
    return opts.region ? region_label : targets.front().url.host_port();
  }

  Error netcheck_error() const {
    return Error(ErrorKind::kUsage, "a netcheck client can only dial_region_tls()");
  }

  // ---- connection state

  // Marks c dead with err (first error wins), fails waiters, closes the stream. Any thread.
  void fail(const std::shared_ptr<Conn>& c, Error err) {
    {
      std::lock_guard lk(mu);
      if (c->dead) return;
      c->dead = true;
      c->error = err;
      for (auto& [data, p] : pings) p->answer.set_value(err);
      pings.clear();
    }
    cv.notify_all();
    log("derp client: connection " + std::to_string(c->generation) + " to " + c->where +
        " dropped: " + err.message);
    asio::post(io, [c] {
      c->stream->close();
      c->space_signal.cancel();
      c->read_timer.cancel();
      for (auto& op : c->write_queue) {
        if (op.done) op.done->set_value(asio::error::operation_aborted);
      }
      c->write_queue.clear();
    });
  }

  // Returns the live connection, connecting if needed. With report_dead, a connection that died
  // since the last call makes this call return its error (and the next one reconnect).
  Result<std::shared_ptr<Conn>> ensure_conn(bool report_dead) {
    std::lock_guard connect_lock(connect_mu);
    {
      std::lock_guard lk(mu);
      if (closed) return closed_err();
      if (netcheck_only) return netcheck_error();
      if (conn && !conn->dead) return conn;
      if (conn && conn->dead) {
        Error e = *conn->error;
        conn.reset();
        if (report_dead) return e;
      }
      connecting = true;
    }
    const uint64_t gen = generation + 1;  // generation only changes under connect_mu
    Result<std::shared_ptr<Conn>> r = closed_err();
    try {
      auto fut = asio::co_spawn(io, do_connect(gen), asio::use_future);
      r = fut.get().result;
    } catch (const std::exception&) {
      r = closed_err();  // the loop stopped under us: close()/destructor
    }
    std::lock_guard lk(mu);
    connecting = false;
    if (closed) return closed_err();  // aborted by close()/cancel(): say so, not "timed out"
    if (!r) return r;
    return conn;
  }

  asio::awaitable<ConnectOutcome> do_connect(uint64_t gen) {
    auto ex = io.get_executor();
    auto deadline = std::make_shared<net::DialDeadline>(ex, opts.connect_timeout);
    {
      // close()/cancel() aborts `dialing` on this thread; one that ran before this dial was
      // set up found nothing to abort, so look at the flag too.
      std::lock_guard lk(mu);
      if (closed) co_return ConnectOutcome{};
    }
    dialing = deadline;
    // Not `ConnectOutcome out{co_await ...}`: GCC 12 destroys the temporary of a co_await in a
    // braced initializer twice (a shared_ptr then loses a reference).
    auto result = co_await dial_and_handshake(gen, *deadline);
    ConnectOutcome out;
    out.result = std::move(result);
    dialing.reset();
    co_return out;
  }

  asio::awaitable<Result<std::shared_ptr<Conn>>> dial_and_handshake(uint64_t gen,
                                                                    net::DialDeadline& deadline) {
    auto ex = io.get_executor();
    const auto started = Clock::now();
    client::DialSettings settings;
    settings.targets = &targets;
    settings.region = opts.region.has_value();
    settings.region_label = region_label;
    settings.prefer_ipv6 = opts.prefer_ipv6 && opts.prefer_ipv6();
    settings.url_dialer = opts.url_dialer;
    settings.dns_cache = &dns_cache;
    settings.user_agent = kUserAgent;
    settings.websocket = opts.websocket;
    settings.tcp_keepalive = opts.tcp_keepalive;
    if (opts.log) settings.log = [this](const std::string& line) { log(line); };
    auto dialed_r = co_await client::dial_stream(settings, deadline);
    if (!dialed_r) co_return std::move(dialed_r).error();
    client::DialedStream dialed = std::move(*dialed_r);
    const net::DerpUrl& url = dialed.target->url;
    const std::string where = url.host_port();
    std::optional<NodePublic> meta_key = dialed.meta_key;  // set: fast start (§6.2)
    const bool fast = meta_key.has_value();
    std::vector<uint8_t> leftover = std::move(dialed.leftover);
    ConnectReport report = std::move(dialed.report);
    const auto handshake_start = Clock::now();

    deadline.on_expiry([s = dialed.stream.get()] { s->close(); });
    auto c = std::make_shared<Conn>(ex, std::move(dialed.stream),
                                    FrameReader(FrameReader::Role::kClient));
    c->generation = gen;
    c->where = where;
    c->local_addr = c->stream->local_address();
    c->tls = report.tls_info;
    c->url = url.to_string();

    auto timeout = [&](const char* step) {
      return Error(ErrorKind::kTimeout, "connect to " + where + ": timed out after " +
                                            net::format_duration(deadline.budget()) + " (" + step +
                                            ")");
    };
    auto handshake_error = [&](const Error& e) { return e.wrap("handshake with " + where); };

    // Reads until the next whole frame. Bytes after it stay in `input`/c->pending.
    std::vector<uint8_t> buf(kReadBufferSize);
    std::vector<uint8_t> input_store = std::move(leftover);
    std::span<const uint8_t> input(input_store);
    bool skip_server_key = fast;
    auto next_frame = [&](const char* step) -> asio::awaitable<Result<FrameReader::Frame>> {
      for (;;) {
        auto f = c->reader.next(input);
        if (!f) co_return handshake_error(f.error());
        if (*f && skip_server_key && (*f)->frame_type() == FrameType::kServerKey) {
          skip_server_key = false;  // fast start: the relay still leads with it; key known
          continue;
        }
        if (*f) co_return **f;
        auto [ec, n] = co_await c->stream->read_some(asio::buffer(buf));
        if (deadline.expired()) co_return timeout(step);
        if (ec == asio::error::eof) {
          co_return Error(
              ErrorKind::kProtocol,
              "handshake with " + where + ": server closed the connection (" + step + ")", ec);
        }
        if (ec) {
          co_return Error(ErrorKind::kIo,
                          "handshake with " + where + ": " + net::lower_first(ec.message()), ec);
        }
        input_store.assign(buf.begin(), buf.begin() + static_cast<ptrdiff_t>(n));
        input = std::span<const uint8_t>(input_store);
      }
    };

    if (fast) {
      c->server_key = *meta_key;
      if (opts.server_key && *opts.server_key != c->server_key) {
        c->stream->close();
        co_return Error(ErrorKind::kProtocol, "handshake with " + where + ": server key " +
                                                  c->server_key.to_string() +
                                                  " (from the TLS meta certificate) is not the "
                                                  "expected " +
                                                  opts.server_key->to_string());
      }
    } else {
      auto first = co_await next_frame("waiting for the ServerKey frame");
      if (!first) co_return std::move(first).error();
      auto server_key = check_server_key_frame(*first, opts.server_key);
      if (!server_key) co_return handshake_error(server_key.error());
      c->server_key = *server_key;
    }

    ClientInfo info;
    info.mesh_key = opts.mesh_key;
    info.can_ack_pings = can_ack_pings.load();
    info.is_prober = opts.is_prober;
    info.app_name = opts.app_name;
    auto hello = encode_client_info_frame(opts.private_key, c->server_key, info);
    if (fast) {
      // The request and ClientInfo go out in one write: no round trip for the 101.
      std::string request = net::build_upgrade_request(url, kUserAgent, /*fast_start=*/true,
                                                       dialed.target->ideal_node);
      hello.insert(hello.begin(), request.begin(), request.end());
    }
    auto [wec, wn] = co_await c->stream->write_all(asio::buffer(hello));
    (void)wn;
    if (deadline.expired()) co_return timeout("sending ClientInfo");
    if (wec) {
      co_return Error(ErrorKind::kIo,
                      "handshake with " + where + ": " + net::lower_first(wec.message()), wec);
    }

    auto second = co_await next_frame("waiting for the ServerInfo frame");
    if (!second) co_return std::move(second).error();
    if (second->frame_type() != FrameType::kServerInfo) {
      co_return Error(ErrorKind::kProtocol, "handshake with " + where +
                                                ": expected ServerInfo, got " +
                                                frame_type_name(second->type));
    }
    auto server_info = open_server_info(opts.private_key, c->server_key, second->payload);
    if (!server_info) co_return handshake_error(server_info.error());
    c->pending.assign(input.begin(), input.end());
    deadline.on_expiry(nullptr);
    const auto now = Clock::now();
    report.handshake = now - handshake_start;
    report.total = now - started;
    report.server_key = c->server_key;
    report.server_info = *server_info;
    report.generation = gen;

    // Frames the relay expects after every (re)connect, written before anything else.
    std::vector<uint8_t> after;
    {
      std::lock_guard lk(mu);
      if (closed) {
        c->stream->close();
        co_return closed_err();
      }
      if (preferred) {
        std::array<uint8_t, kFrameHeaderLen + 1> f{};
        after.insert(after.end(), f.begin(), f.begin() + encode_note_preferred(f, *preferred));
      }
      if (opts.watch_connection_changes) {
        std::array<uint8_t, kFrameHeaderLen> f{};
        after.insert(after.end(), f.begin(), f.begin() + encode_watch_conns(f));
      }
      if (server_info->token_bucket_bytes_per_second > 0) {
        // A fresh bucket is full, as Go's rate.Limiter.
        c->bucket.emplace(
            static_cast<double>(server_info->token_bucket_bytes_per_second),
            static_cast<double>(std::max<int64_t>(0, server_info->token_bucket_bytes_burst)),
            Clock::now());
      }
      conn = c;
      generation = gen;
      server_pub = c->server_key;
      last_tls = c->tls;
      last_report = report;
      last_url = c->url;
      queue.push_back(ReceivedDetail{ServerInfoMessage{*server_info}, gen});
    }
    cv.notify_all();
    if (!after.empty()) c->write_queue.push_back(WriteOp{std::move(after), nullptr});
    start_writer(c);
    c->input = std::span<const uint8_t>(c->pending);
    c->last_read = Clock::now();
    if (opts.read_timeout.count() > 0) arm_read_deadline(c, opts.read_timeout);
    process_input(c);
    log("derp client: connected to " + c->url + " (" + c->server_key.to_string() +
        ") from " + c->local_addr + " as " + self_pub.to_string() + ", generation " +
        std::to_string(gen) + " over " + report.transport +
        (report.proxy.empty() ? "" : " via proxy " + report.proxy));
    if (!report.note.empty()) log("derp client: " + report.note);
    co_return c;
  }

  // ---- reading (io thread)

  // The read loop is callback-driven rather than one long coroutine: each read is a short
  // coroutine, and the connection's lifetime rides on the handlers' shared_ptr copies.
  void start_read(const std::shared_ptr<Conn>& c) {
    asio::co_spawn(io, c->stream->read_some(asio::buffer(c->read_buf)),
                   [this, c](std::exception_ptr e, net::IoResult r) {
                     if (e) r = {asio::error::fault, 0};
                     on_read(c, r);
                   });
  }

  // Go sets a read deadline before every frame it reads; one timer per connection, re-armed
  // for what is left when it fires early, does the same without a timer operation per read.
  void arm_read_deadline(const std::shared_ptr<Conn>& c, Clock::duration d) {
    c->read_timer.expires_after(d);
    c->read_timer.async_wait([this, c](const error_code& ec) {
      if (ec) return;  // cancelled: the connection is over
      {
        std::lock_guard lk(mu);
        if (c->dead || closed) return;
      }
      const auto limit = Clock::duration(opts.read_timeout);
      const auto quiet = Clock::now() - c->last_read;
      if (c->read_parked || quiet < limit) {
        arm_read_deadline(c, c->read_parked ? limit : limit - quiet);
        return;
      }
      fail(c, read_deadline_error(c->where, opts.read_timeout));
    });
  }

  void on_read(const std::shared_ptr<Conn>& c, net::IoResult r) {
    c->last_read = Clock::now();
    if (r.first) {
      std::string why = r.first == asio::error::eof ? std::string("connection closed by server")
                                                    : net::lower_first(r.first.message());
      fail(c, Error(ErrorKind::kIo, "read from " + c->where + ": " + why, r.first));
      return;
    }
    c->input = std::span<const uint8_t>(c->read_buf.data(), r.second);
    process_input(c);
  }

  // Parses what was read and queues the messages; parks when the queue is full; reads again
  // when the input is used up.
  void process_input(const std::shared_ptr<Conn>& c) {
    for (;;) {
      if (c->held) {
        if (!try_enqueue(c, c->held)) return;
        if (c->held) {
          // Back-pressure: stop reading until recv() makes room; TCP then slows the relay.
          c->read_parked = true;
          c->space_signal.expires_at(Clock::time_point::max());
          c->space_signal.async_wait([this, c](const error_code&) {
            c->read_parked = false;
            c->last_read = Clock::now();  // the deadline starts again when reading does
            process_input(c);
          });
          return;
        }
      }
      auto f = c->reader.next(c->input);
      if (!f) {
        fail(c, f.error().wrap("read from " + c->where));
        return;
      }
      if (!*f) break;
      if (!handle_frame(c, **f, c->held)) return;
    }
    {
      std::lock_guard lk(mu);
      if (c->dead || closed) return;
    }
    start_read(c);
  }

  // Decodes one frame into *out (left empty for skipped/consumed frames). False when the
  // connection is finished.
  bool handle_frame(const std::shared_ptr<Conn>& c, const FrameReader::Frame& f,
                    std::optional<ReceivedMessage>& out) {
    auto d = client::decode_message(f, opts.private_key, c->server_key);
    if (!d) {
      fail(c, d.error().wrap("read from " + c->where));
      return false;
    }
    if (!d->skipped_why.empty()) log("derp client: " + d->skipped_why);
    if (!d->message) return true;
    ReceivedMessage& m = *d->message;

    if (auto* pong = std::get_if<PongMessage>(&m)) {
      const auto now = Clock::now();
      std::lock_guard lk(mu);
      auto it = pings.find(pong->data);
      if (it != pings.end()) {
        it->second->answer.set_value(now);
        pings.erase(it);
        return true;  // answered a ping(): not the caller's business
      }
    }
    if (auto* ping = std::get_if<PingMessage>(&m); ping && can_ack_pings.load()) {
      std::vector<uint8_t> pong(kFrameHeaderLen + 8);
      encode_pong(pong, ping->data);
      c->write_queue.push_back(WriteOp{std::move(pong), nullptr});
      start_writer(c);
    }
    out = std::move(m);
    return true;
  }

  // Moves *m into the queue when there is room (then resets m). False when the connection is
  // finished; m still set means "full: wait".
  bool try_enqueue(const std::shared_ptr<Conn>& c, std::optional<ReceivedMessage>& m) {
    {
      std::lock_guard lk(mu);
      if (c->dead || closed) return false;
      if (queue.size() >= opts.recv_queue_depth) {
        c->reader_waiting = true;  // recv() cancels space_signal when it makes room
        return true;
      }
      queue.push_back(ReceivedDetail{std::move(*m), c->generation});
      m.reset();
    }
    cv.notify_all();
    return true;
  }

  // ---- writing (io thread)

  void start_writer(const std::shared_ptr<Conn>& c) {
    if (c->writing || c->write_queue.empty()) return;
    c->writing = true;
    write_next(c);
  }

  void write_next(const std::shared_ptr<Conn>& c) {
    if (c->write_queue.empty()) {
      c->writing = false;
      return;
    }
    auto op = std::make_shared<WriteOp>(std::move(c->write_queue.front()));
    c->write_queue.pop_front();
    asio::co_spawn(
        io, c->stream->write_all(asio::buffer(op->bytes)),
        [this, c, op](std::exception_ptr e, net::IoResult r) {
          if (e) r = {asio::error::fault, 0};
          if (op->done) op->done->set_value(r.first);
          if (r.first) {
            c->writing = false;
            fail(c, Error(ErrorKind::kIo,
                          "write to " + c->where + ": " + net::lower_first(r.first.message()),
                          r.first));
            return;
          }
          write_next(c);
        });
  }

  // Queues one frame on c and waits for it to be written (or the write timeout).
  Result<void> write_on(const std::shared_ptr<Conn>& c, std::vector<uint8_t> frame) {
    auto done = std::make_shared<std::promise<error_code>>();
    auto fut = done->get_future();
    asio::post(io, [this, c, frame = std::move(frame), done]() mutable {
      if (c->dead) {
        done->set_value(asio::error::operation_aborted);
        return;
      }
      c->write_queue.push_back(WriteOp{std::move(frame), done});
      start_writer(c);
    });
    error_code ec;
    try {
      if (fut.wait_for(opts.write_timeout) == std::future_status::timeout) {
        Error e(ErrorKind::kTimeout, "write to " + c->where + ": timed out after " +
                                         net::format_duration(opts.write_timeout));
        fail(c, e);
        forget(c);
        return e;
      }
      ec = fut.get();
    } catch (const std::exception&) {
      return closed_err();
    }
    if (!ec) return {};
    std::lock_guard lk(mu);
    if (closed) return closed_err();
    Error e = c->error ? *c->error
                       : Error(ErrorKind::kIo,
                               "write to " + c->where + ": " + net::lower_first(ec.message()), ec);
    if (conn == c) conn.reset();  // error reported: the next call reconnects
    return e;
  }

  // §7.6 with waiting instead of Go's silent drop: blocks until c's bucket holds `bytes` (or
  // its whole burst, for a packet larger than that) and takes them; the bucket may go into debt,
  // which the next sends wait off, so the long-run rate holds. Returns early, leaving the
  // error to the write, when c dies; kClosed when the client closes meanwhile.
  Result<void> pace_send(const std::shared_ptr<Conn>& c, size_t bytes) {
    std::unique_lock lk(mu);
    if (!c->bucket) return {};
    const double charge = static_cast<double>(bytes);
    const double need = std::min(charge, c->bucket->burst());
    std::optional<Clock::time_point> wait_began;
    for (;;) {
      if (closed) return closed_err();
      if (c->dead) return {};
      const auto now = Clock::now();
      const auto missing = c->bucket->wait_for(need, now);  // finite: need ≤ the burst
      if (missing.count() == 0) {
        c->bucket->take(charge, now);
        break;
      }
      if (!wait_began) {
        wait_began = now;
        ++stats.send_rate_waits;
      }
      cv.wait_for(lk, missing);  // close() notifies cv
    }
    if (wait_began) stats.send_rate_waited += Clock::now() - *wait_began;
    return {};
  }

  // The caller has reported c's error: the next call starts a new connection.
  void forget(const std::shared_ptr<Conn>& c) {
    std::lock_guard lk(mu);
    if (conn == c) conn.reset();
  }

  Result<void> write_frame(std::vector<uint8_t> frame, bool connect) {
    std::shared_ptr<Conn> c;
    if (connect) {
      auto r = ensure_conn(true);
      if (!r) return std::move(r).error();
      c = *r;
    } else {
      std::lock_guard lk(mu);
      if (closed) return closed_err();
      if (netcheck_only) return netcheck_error();
      if (!conn || conn->dead) return Error(ErrorKind::kIo, "not connected to " + target_name());
      c = conn;
    }
    return write_on(c, std::move(frame));
  }
};

// ---- Client

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<void> check_ca_file(const std::string& path) {
  net::TlsClientConfig config;
  config.ca_file = path;
  auto ctx = net::make_tls_client_context(config);
  if (!ctx) return std::move(ctx).error();
  return {};
}

Result<std::unique_ptr<Client>> Client::create(ClientOptions options) {
  if (sodium_init() < 0) return Error(ErrorKind::kInternal, "libsodium failed to initialise");
  if (options.private_key.is_zero()) {
    return Error(ErrorKind::kUsage, "client private key is missing (all zero)");
  }
  auto targets = client::make_dial_targets(options);
  if (!targets) return std::move(targets).error();
  if (options.recv_queue_depth == 0) options.recv_queue_depth = 1;
  auto impl = std::make_unique<Impl>(std::move(options), std::move(*targets));
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  if (raw->opts.stop_token.stop_possible()) {
    // Runs close(true) right here when stop was requested already.
    raw->stop_cb.emplace(raw->opts.stop_token, std::function<void()>([raw] { raw->close(true); }));
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Result<std::unique_ptr<Client>> Client::create_netcheck(ClientOptions options) {
  if (sodium_init() < 0) return Error(ErrorKind::kInternal, "libsodium failed to initialise");
  options.private_key = NodePrivate::generate();  // never used: no DERP handshake happens
  options.server_url.clear();
  options.region.reset();
  auto impl = std::make_unique<Impl>(std::move(options), std::vector<client::ServerTarget>{},
                                     /*netcheck=*/true);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  if (raw->opts.stop_token.stop_possible()) {
    raw->stop_cb.emplace(raw->opts.stop_token, std::function<void()>([raw] { raw->close(true); }));
  }
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Result<std::unique_ptr<TlsConnection>> Client::dial_region_tls(const DERPRegion& region) {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->closed) return impl_->closed_err();
  }
  const ClientOptions& o = impl_->opts;
  TlsDialOptions t;
  t.ca_file = o.ca_file;
  t.insecure = o.insecure;
  t.connect_timeout = o.connect_timeout;
  t.prefer_ipv6 = o.prefer_ipv6;
  t.log = o.log;
  t.stop_token = impl_->closing.get_token();
  auto r = derp::dial_region_tls(region, t);
  if (!r) {
    std::lock_guard lk(impl_->mu);
    if (impl_->closed) return impl_->closed_err();  // "client cancelled", not the dial's words
  }
  return r;
}

Client::~Client() {
  impl_->stop_cb.reset();  // waits for a callback running on another thread
  close();
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<void> Client::connect() {
  auto r = impl_->ensure_conn(false);
  if (!r) return std::move(r).error();
  return {};
}

Result<void> Client::send(const NodePublic& dst, std::span<const uint8_t> data) {
  if (data.size() > kMaxPacketSize) {
    return Error(ErrorKind::kUsage, "packet of " + std::to_string(data.size()) +
                                        " bytes is over the 65536-byte limit");
  }
  std::vector<uint8_t> frame(kFrameHeaderLen + kKeyLen + data.size());
  encode_send_packet(frame, dst, data);
  auto c = impl_->ensure_conn(true);
  if (!c) return std::move(c).error();
  if (auto paced = impl_->pace_send(*c, frame.size()); !paced) return paced;
  return impl_->write_on(*c, std::move(frame));
}

Result<ReceivedMessage> Client::recv(std::chrono::milliseconds timeout) {
  auto r = recv_detail(timeout);
  if (!r) return std::move(r).error();
  return std::move(r->message);
}

Result<ReceivedDetail> Client::recv_detail(std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  const auto until = Clock::now() + timeout;
  std::unique_lock lk(d.mu);
  for (;;) {
    if (d.closed) return d.closed_err();
    if (!d.queue.empty()) {
      ReceivedDetail m = std::move(d.queue.front());
      d.queue.pop_front();
      if (d.conn && d.conn->reader_waiting) {
        d.conn->reader_waiting = false;
        asio::post(d.io, [c = d.conn] { c->space_signal.cancel(); });
      }
      return m;
    }
    if (!d.conn || d.conn->dead) {
      lk.unlock();
      auto c = d.ensure_conn(true);
      if (!c) return std::move(c).error();
      lk.lock();
      continue;
    }
    if (d.cv.wait_until(lk, until) == std::cv_status::timeout && d.queue.empty() && !d.closed &&
        d.conn && !d.conn->dead) {
      return Error(ErrorKind::kTimeout, "recv from " + d.target_name() + ": nothing within " +
                                            net::format_duration(timeout));
    }
  }
}

Result<std::chrono::nanoseconds> Client::ping(std::chrono::milliseconds timeout) {
  Impl& d = *impl_;
  auto c = d.ensure_conn(true);
  if (!c) return std::move(c).error();
  PingData data;
  auto pending = std::make_shared<PendingPing>();
  auto answer = pending->answer.get_future();
  {
    std::lock_guard lk(d.mu);
    if (d.closed) return d.closed_err();  // close() already failed the pings it knew of
    do {
      randombytes_buf(data.data(), data.size());
    } while (d.pings.count(data));
    d.pings[data] = pending;
  }
  std::vector<uint8_t> frame(kFrameHeaderLen + 8);
  encode_ping(frame, data);
  const auto start = Clock::now();
  auto w = d.write_on(*c, std::move(frame));
  auto forget_ping = [&] {
    std::lock_guard lk(d.mu);
    d.pings.erase(data);
  };
  if (!w) {
    forget_ping();
    return std::move(w).error();
  }
  if (answer.wait_for(timeout) == std::future_status::timeout) {
    forget_ping();
    return Error(ErrorKind::kTimeout,
                 "ping " + d.target_name() + ": no pong within " + net::format_duration(timeout));
  }
  auto got = answer.get();
  if (!got) {
    d.forget(*c);
    std::lock_guard lk(d.mu);
    if (d.closed) return d.closed_err();
    return std::move(got).error();
  }
  return std::chrono::duration_cast<std::chrono::nanoseconds>(*got - start);
}

Result<void> Client::send_ping(const PingData& data) {
  std::vector<uint8_t> frame(kFrameHeaderLen + 8);
  encode_ping(frame, data);
  return impl_->write_frame(std::move(frame), false);
}

Result<void> Client::send_pong(const PingData& data) {
  std::vector<uint8_t> frame(kFrameHeaderLen + 8);
  encode_pong(frame, data);
  return impl_->write_frame(std::move(frame), false);
}

Result<void> Client::note_preferred(bool preferred) {
  {
    std::lock_guard lk(impl_->mu);
    if (impl_->closed) return impl_->closed_err();
    if (impl_->netcheck_only) return impl_->netcheck_error();
    impl_->preferred = preferred;
    if (!impl_->conn || impl_->conn->dead) return {};  // sent after the next connect
  }
  std::vector<uint8_t> frame(kFrameHeaderLen + 1);
  encode_note_preferred(frame, preferred);
  return impl_->write_frame(std::move(frame), false);
}

Result<void> Client::close_peer(const NodePublic& target) {
  std::vector<uint8_t> frame(kFrameHeaderLen + kKeyLen);
  encode_close_peer(frame, target);
  return impl_->write_frame(std::move(frame), true);
}

Result<void> Client::forward_packet(const NodePublic& src, const NodePublic& dst,
                                    std::span<const uint8_t> data) {
  if (data.size() > kMaxPacketSize) {
    return Error(ErrorKind::kUsage, "packet of " + std::to_string(data.size()) +
                                        " bytes is over the 65536-byte limit");
  }
  std::vector<uint8_t> frame(kFrameHeaderLen + 2 * kKeyLen + data.size());
  encode_forward_packet(frame, src, dst, data);
  return impl_->write_frame(std::move(frame), true);
}

Result<void> Client::watch_conns() {
  std::vector<uint8_t> frame(kFrameHeaderLen);
  encode_watch_conns(frame);
  return impl_->write_frame(std::move(frame), true);
}

void Client::close() { impl_->close(false); }

void Client::cancel() { impl_->close(true); }

bool Client::cancelled() const { return impl_->cancelled.load(); }

void Client::Impl::close(bool cancel) {
  Impl& d = *this;
  std::shared_ptr<Conn> c;
  {
    std::lock_guard lk(d.mu);
    if (d.closed) return;
    if (cancel) d.cancelled = true;
    d.closed = true;
    c = std::move(d.conn);
    for (auto& [data, p] : d.pings) p->answer.set_value(d.closed_err());
    d.pings.clear();
    d.queue.clear();
  }
  d.cv.notify_all();
  d.closing.request_stop();
  asio::post(d.io, [&d, c] {
    if (d.dialing) d.dialing->abort();
    if (c) {
      c->stream->close();
      c->space_signal.cancel();
      c->read_timer.cancel();
    }
  });
}

NodePublic Client::server_public_key() const {
  std::lock_guard lk(impl_->mu);
  return impl_->server_pub;
}

NodePublic Client::self_public_key() const { return impl_->self_pub; }

Result<std::string> Client::local_addr() const {
  std::lock_guard lk(impl_->mu);
  if (impl_->closed) return impl_->closed_err();
  if (!impl_->conn || impl_->conn->dead) {
    return Error(ErrorKind::kIo, "not connected to " + impl_->target_name());
  }
  return impl_->conn->local_addr;
}

ConnectedState Client::connected_state() const {
  std::lock_guard lk(impl_->mu);
  ConnectedState s;
  s.closed = impl_->closed;
  s.connecting = impl_->connecting;
  s.connected = !s.closed && impl_->conn && !impl_->conn->dead;
  if (s.connected) s.local_addr = impl_->conn->local_addr;
  return s;
}

uint64_t Client::generation() const {
  std::lock_guard lk(impl_->mu);
  return impl_->generation;
}

std::optional<TlsInfo> Client::tls_info() const {
  std::lock_guard lk(impl_->mu);
  return impl_->last_tls;
}

std::string Client::server_url() const {
  if (impl_->netcheck_only) return "";
  if (!impl_->opts.region) return impl_->targets.front().url.to_string();
  std::lock_guard lk(impl_->mu);
  return impl_->last_url;
}

ClientStats Client::stats() const {
  std::lock_guard lk(impl_->mu);
  return impl_->stats;
}

std::optional<ConnectReport> Client::last_connect_report() const {
  std::lock_guard lk(impl_->mu);
  return impl_->last_report;
}

void Client::set_can_ack_pings(bool can_ack) { impl_->can_ack_pings = can_ack; }

bool Client::is_prober() const { return impl_->opts.is_prober; }

MeshKey Client::mesh_key() const { return impl_->opts.mesh_key; }

}  // namespace derp
