#include "bench/load.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include "bench/raw_forwarder.h"
#include "net/awaitable.h"

namespace derp::bench {

using net::kTuple;

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kReadBuffer = 256 * 1024;
constexpr size_t kWriteBatchBytes = 128 * 1024;  // one write carries up to this many bytes
constexpr size_t kHeaderBytes = 16;              // payload: seq (8) + send time (8)
// Over WebSocket a client masks each message in a buffer of this size before writing it: a
// batch goes out in kWriteBatchBytes / kWsMaskBuffer socket writes.
constexpr size_t kWsMaskBuffer = 32 * 1024;

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
          .count());
}

// A counter written by one thread and read by others without tearing.
struct Counter {
  std::atomic<uint64_t> v{0};
  void add(uint64_t n) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

// Phases of a run, set by the main thread, read by the loops.
enum Phase : int { kWarmup = 0, kMeasure = 1, kStop = 2 };

struct Loop;

struct Pair {
  int index = 0;
  Loop* loop = nullptr;
  NodePrivate send_key, recv_key;
  NodePublic send_pub, recv_pub;
  std::unique_ptr<Conn> sender, receiver;
  std::vector<uint8_t> wbuf;
  std::optional<asio::steady_timer> wake;
  bool waiting = false;
  uint64_t next_seq = 0;  // packets encoded so far
  uint64_t seen = 0;      // highest sequence number received + 1
  uint64_t sent_m = 0, delivered_m = 0, delivered = 0, stalls = 0, foreign = 0;
  uint64_t writes_m = 0;  // write calls in the measured window
};

struct Loop {
  asio::io_context io{1};
  std::vector<Pair*> pairs;
  Histogram latency, ping;
  Counter sent, delivered;
};

struct Shared {
  LoadConfig cfg;
  const Target* target = nullptr;  // nullptr: raw
  tcp::endpoint raw_endpoint;
  std::atomic<int> phase{kWarmup};
  std::mutex mu;
  std::condition_variable cv;
  int dialed = 0;
  std::optional<Error> error;
  // The pinger, on a loop and thread of its own: its round trips measure the relay, not how
  // long a pong waits behind the load pairs' packets in derp-bench's own loops.
  std::unique_ptr<Conn> ping_conn;
  std::optional<asio::steady_timer> ping_timer;
  std::array<uint64_t, 4096> ping_sent_at{};
  uint64_t pings_sent = 0;

  void dial_done(std::optional<Error> e) {
    std::lock_guard lock(mu);
    ++dialed;
    if (e && !error) error = std::move(e);
    cv.notify_all();
  }
};

size_t frame_len(size_t size) { return kFrameHeaderLen + kKeyLen + size; }

asio::awaitable<void> dial_pair(Shared& sh, Pair& p) {
  auto& io = p.loop->io;
  const bool tls = sh.target && sh.target->tls;
  const bool ws = sh.target && sh.target->websocket;
  auto ctx = sh.target ? sh.target->tls_context : nullptr;
  p.receiver = std::make_unique<Conn>(io, tls, ws, ctx, kReadBuffer);
  p.sender = std::make_unique<Conn>(io, tls, ws, ctx, 4096, kWsMaskBuffer);
  Result<void> r;
  if (sh.target) {
    // The receiver first, so the relay knows it before the first packet arrives.
    r = co_await p.receiver->dial(*sh.target, p.recv_key);
    if (r) r = co_await p.sender->dial(*sh.target, p.send_key);
  } else {
    std::array<uint8_t, 8> hello{};
    const uint32_t idx = static_cast<uint32_t>(p.index);
    std::memcpy(hello.data(), &idx, 4);
    hello[4] = 1;  // receiver
    r = co_await p.receiver->dial_raw(sh.raw_endpoint, hello);
    hello[4] = 0;
    if (r) r = co_await p.sender->dial_raw(sh.raw_endpoint, hello);
  }
  sh.dial_done(r ? std::nullopt : std::optional<Error>(r.error()));
}

asio::awaitable<void> dial_pinger(Shared& sh, asio::io_context& io) {
  const bool tls = sh.target->tls;
  sh.ping_conn =
      std::make_unique<Conn>(io, tls, sh.target->websocket, sh.target->tls_context, 16 * 1024);
  auto r = co_await sh.ping_conn->dial(*sh.target, NodePrivate::generate());
  sh.dial_done(r ? std::nullopt : std::optional<Error>(r.error()));
}

void on_packet(Shared& sh, Pair& p, std::span<const uint8_t> payload, uint64_t now) {
  // RecvPacket (relay) or SendPacket (raw forwarder): 32-byte key, then our payload.
  if (payload.size() < kKeyLen + kHeaderBytes ||
      (sh.target && std::memcmp(payload.data(), p.send_pub.bytes.data(), kKeyLen) != 0)) {
    ++p.foreign;
    return;
  }
  uint64_t seq, sent_at;
  std::memcpy(&seq, payload.data() + kKeyLen, 8);
  std::memcpy(&sent_at, payload.data() + kKeyLen + 8, 8);
  ++p.delivered;
  p.loop->delivered.add(1);
  if (sh.phase.load(std::memory_order_relaxed) == kMeasure) {
    ++p.delivered_m;
    p.loop->latency.add(now >= sent_at ? now - sent_at : 0);
  }
  if (seq + 1 > p.seen) {
    p.seen = seq + 1;
    if (p.waiting && sh.cfg.rate == 0 && !sh.cfg.flood) p.wake->cancel();
  }
}

asio::awaitable<void> recv_loop(Shared& sh, Pair& p) {
  const uint8_t want =
      static_cast<uint8_t>(sh.target ? FrameType::kRecvPacket : FrameType::kSendPacket);
  boost::system::error_code ec;
  for (;;) {
    auto in = co_await p.receiver->read_some(ec);
    if (ec) co_return;
    const uint64_t now = now_ns();  // one clock read per read: frames of a read arrived together
    while (!in.empty()) {
      auto f = p.receiver->reader().next(in);
      if (!f) {
        std::lock_guard lock(sh.mu);
        if (!sh.error) sh.error = f.error().wrap("receiver");
        co_return;
      }
      if (!*f) break;
      if ((*f)->type == want) on_packet(sh, p, (*f)->payload, now);
    }
  }
}

// Reads and discards what the relay sends a sender (keep-alives, health), so it never blocks.
asio::awaitable<void> drain_loop(Conn& c) {
  boost::system::error_code ec;
  for (;;) {
    auto in = co_await c.read_some(ec);
    if (ec) co_return;
    while (!in.empty()) {
      auto f = c.reader().next(in);
      if (!f || !*f) break;
    }
  }
}

asio::awaitable<void> send_loop(Shared& sh, Pair& p) {
  const LoadConfig& cfg = sh.cfg;
  const bool closed = cfg.rate == 0 && !cfg.flood;
  const size_t flen = frame_len(cfg.size);
  size_t max_batch = std::max<size_t>(1, kWriteBatchBytes / flen);
  if (closed) max_batch = std::min(max_batch, static_cast<size_t>(cfg.window));
  p.wbuf.assign(max_batch * flen, 0);
  const auto start = Clock::now();
  boost::system::error_code ec;
  while (sh.phase.load(std::memory_order_relaxed) != kStop) {
    uint64_t n = max_batch;
    if (closed) {
      const uint64_t in_flight = p.next_seq - p.seen;
      n = in_flight >= static_cast<uint64_t>(cfg.window) ? 0 : cfg.window - in_flight;
    } else if (cfg.rate > 0) {
      const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      const uint64_t due = static_cast<uint64_t>(cfg.rate * elapsed) + 1;
      n = due > p.next_seq ? due - p.next_seq : 0;
    }
    n = std::min<uint64_t>(n, max_batch);
    if (n == 0) {
      const uint64_t seen_before = p.seen;
      if (closed) {
        p.wake->expires_after(cfg.stall);
      } else {
        p.wake->expires_at(start + std::chrono::nanoseconds(static_cast<int64_t>(
                                       static_cast<double>(p.next_seq) * 1e9 / cfg.rate)));
      }
      p.waiting = true;
      auto [wec] = co_await p.wake->async_wait(kTuple);
      p.waiting = false;
      if (!p.sender->is_open()) co_return;
      if (closed && !wec && p.seen == seen_before && p.next_seq > p.seen) {
        // Nothing came back for a whole stall period: the window's packets were dropped.
        ++p.stalls;
        p.seen = p.next_seq;
      }
      continue;
    }
    const uint64_t ts = now_ns();
    uint8_t* out = p.wbuf.data();
    for (uint64_t i = 0; i < n; ++i, out += flen) {
      write_frame_header(out, FrameType::kSendPacket, static_cast<uint32_t>(kKeyLen + cfg.size));
      std::memcpy(out + kFrameHeaderLen, p.recv_pub.bytes.data(), kKeyLen);
      const uint64_t seq = p.next_seq++;
      std::memcpy(out + kFrameHeaderLen + kKeyLen, &seq, 8);
      std::memcpy(out + kFrameHeaderLen + kKeyLen + 8, &ts, 8);
    }
    const bool measuring = sh.phase.load(std::memory_order_relaxed) == kMeasure;
    if (measuring) p.sent_m += n;
    p.loop->sent.add(n);
    if (cfg.per_frame) {
      // As a Go client: each packet is its own write (and its own syscall).
      for (uint64_t i = 0; i < n && !ec; ++i) {
        co_await p.sender->write_all({p.wbuf.data() + i * flen, flen}, ec);
      }
      if (measuring) p.writes_m += n;
    } else {
      co_await p.sender->write_all({p.wbuf.data(), n * flen}, ec);
      if (measuring) ++p.writes_m;
    }
    if (ec) co_return;
  }
}

asio::awaitable<void> ping_loop(Shared& sh, asio::io_context& io, Loop& loop0) {
  sh.ping_timer.emplace(io);
  uint64_t seq = 0;
  boost::system::error_code ec;
  while (sh.phase.load(std::memory_order_relaxed) != kStop) {
    sh.ping_timer->expires_after(sh.cfg.ping_interval);
    co_await sh.ping_timer->async_wait(kTuple);
    if (!sh.ping_conn->is_open() || sh.phase.load() == kStop) co_return;
    if (sh.phase.load(std::memory_order_relaxed) != kMeasure) continue;
    PingData data{};
    ++seq;
    std::memcpy(data.data(), &seq, 8);
    std::array<uint8_t, kFrameHeaderLen + 8> frame{};
    encode_ping(frame, data);
    sh.ping_sent_at[seq % sh.ping_sent_at.size()] = now_ns();
    ++sh.pings_sent;
    co_await sh.ping_conn->write_all(frame, ec);
    if (ec) co_return;
  }
  (void)loop0;
}

asio::awaitable<void> pong_loop(Shared& sh, Loop& loop0) {
  boost::system::error_code ec;
  for (;;) {
    auto in = co_await sh.ping_conn->read_some(ec);
    if (ec) co_return;
    const uint64_t now = now_ns();
    while (!in.empty()) {
      auto f = sh.ping_conn->reader().next(in);
      if (!f || !*f) break;
      if ((*f)->frame_type() != FrameType::kPong) continue;
      auto d = decode_ping((*f)->payload);
      if (!d) continue;
      uint64_t seq;
      std::memcpy(&seq, d->data(), 8);
      const uint64_t at = sh.ping_sent_at[seq % sh.ping_sent_at.size()];
      if (at != 0 && now >= at) loop0.ping.add(now - at);
    }
  }
}

}  // namespace

Result<LoadReport> run_load(const Target* target, const LoadConfig& cfg) {
  Shared sh;
  sh.cfg = cfg;
  sh.target = target;
  std::unique_ptr<RawForwarder> fwd;
  if (!target) {
    auto f = RawForwarder::start();
    if (!f) return f.error();
    fwd = std::move(*f);
    sh.raw_endpoint = fwd->endpoint();
  }
  const int nloops = std::max(1, std::min(cfg.threads, cfg.pairs));
  std::vector<std::unique_ptr<Loop>> loops;
  for (int i = 0; i < nloops; ++i) loops.push_back(std::make_unique<Loop>());
  std::vector<std::unique_ptr<Pair>> pairs;
  for (int i = 0; i < cfg.pairs; ++i) {
    auto p = std::make_unique<Pair>();
    p->index = i;
    p->loop = loops[static_cast<size_t>(i % nloops)].get();
    p->send_key = NodePrivate::generate();
    p->recv_key = NodePrivate::generate();
    p->send_pub = p->send_key.public_key();
    p->recv_pub = p->recv_key.public_key();
    p->wake.emplace(p->loop->io);
    p->loop->pairs.push_back(p.get());
    pairs.push_back(std::move(p));
  }
  const bool pinger = target && cfg.ping_interval.count() > 0;
  if (pinger) loops.push_back(std::make_unique<Loop>());  // no pairs: the pinger's alone
  Loop* const ping_lp = loops.back().get();
  using Guard = asio::executor_work_guard<asio::io_context::executor_type>;
  std::vector<Guard> guards;
  std::vector<std::thread> threads;
  for (auto& l : loops) {
    guards.emplace_back(l->io.get_executor());
    threads.emplace_back([io = &l->io] { io->run(); });
  }
  int to_dial = cfg.pairs + (pinger ? 1 : 0);
  for (auto& p : pairs) {
    asio::co_spawn(p->loop->io, dial_pair(sh, *p), asio::detached);
  }
  if (pinger) asio::co_spawn(ping_lp->io, dial_pinger(sh, ping_lp->io), asio::detached);

  auto shutdown = [&] {
    sh.phase = kStop;
    for (auto& l : loops) {
      asio::post(l->io, [&, lp = l.get()] {
        for (Pair* p : lp->pairs) {
          if (p->sender) p->sender->close();
          if (p->receiver) p->receiver->close();
          p->wake->cancel();
        }
        if (pinger && lp == ping_lp) {
          if (sh.ping_conn) sh.ping_conn->close();
          if (sh.ping_timer) sh.ping_timer->cancel();
        }
      });
    }
    for (auto& g : guards) g.reset();
    for (auto& t : threads) t.join();
    fwd.reset();
    // The pinger lives in `sh`, which outlives the loops' io_contexts: release its socket (a
    // WebSocket stream also owns a timer) while the ping loop's context still exists.
    sh.ping_conn.reset();
  };

  {
    std::unique_lock lock(sh.mu);
    const auto deadline =
        Clock::now() + std::chrono::seconds(10) + std::chrono::milliseconds(10) * to_dial;
    sh.cv.wait_until(lock, deadline, [&] { return sh.dialed == to_dial || sh.error; });
    if (sh.error || sh.dialed != to_dial) {
      Error e = sh.error ? *sh.error
                         : Error(ErrorKind::kTimeout, "connecting " + std::to_string(to_dial) +
                                                          " clients took too long");
      lock.unlock();
      shutdown();
      return e;
    }
  }
  LoadReport rep;
  if (target) rep.server_key = pairs[0]->sender->server_key().to_string();
  for (auto& p : pairs) {
    asio::co_spawn(p->loop->io, recv_loop(sh, *p), asio::detached);
    asio::co_spawn(p->loop->io, drain_loop(*p->sender), asio::detached);
  }
  if (pinger) {
    asio::co_spawn(ping_lp->io, pong_loop(sh, *ping_lp), asio::detached);
    asio::co_spawn(ping_lp->io, ping_loop(sh, ping_lp->io, *ping_lp), asio::detached);
  }
  for (auto& p : pairs) asio::co_spawn(p->loop->io, send_loop(sh, *p), asio::detached);

  // The run itself is paced by the clock: these sleeps are the benchmark's duration.
  std::this_thread::sleep_for(cfg.warmup);
  // CPU over the measured window: the relay's (when its pid is known) and our own.
  auto cpu_pair = [&]() -> std::pair<std::optional<double>, double> {
    std::optional<double> server;
    if (cfg.server_pid) {
      auto c = read_cpu_seconds(*cfg.server_pid);
      if (c) server = *c;
    }
    auto self = read_cpu_seconds(::getpid());
    return {server, self ? *self : 0};
  };
  sh.phase = kMeasure;
  const auto t0 = Clock::now();
  const auto cpu0 = cpu_pair();
  std::this_thread::sleep_for(cfg.duration);
  sh.phase = kStop;
  const auto t1 = Clock::now();
  const auto cpu1 = cpu_pair();
  if (cpu0.first && cpu1.first) rep.server_cpu_seconds = *cpu1.first - *cpu0.first;
  rep.self_cpu_seconds = cpu1.second - cpu0.second;
  for (auto& l : loops) {
    asio::post(l->io, [lp = l.get()] {
      for (Pair* p : lp->pairs) p->wake->cancel();  // senders see kStop now
    });
  }
  // Drain: wait until everything sent arrived, or nothing moved for 500 ms (the rest was
  // dropped), or 3 s passed.
  auto totals = [&] {
    uint64_t s = 0, d = 0;
    for (auto& l : loops) {
      s += l->sent.get();
      d += l->delivered.get();
    }
    return std::pair(s, d);
  };
  {
    const auto hard = Clock::now() + std::chrono::seconds(3);
    auto last = totals();
    auto last_change = Clock::now();
    while (Clock::now() < hard) {
      auto cur = totals();
      if (cur.first == cur.second) break;
      if (cur != last) {
        last = cur;
        last_change = Clock::now();
      } else if (Clock::now() - last_change > std::chrono::milliseconds(500)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));  // polling a counter
    }
  }
  shutdown();

  rep.seconds = std::chrono::duration<double>(t1 - t0).count();
  rep.min_pair_pps = -1;
  for (auto& p : pairs) {
    rep.sent += p->sent_m;
    rep.delivered += p->delivered_m;
    rep.total_sent += p->next_seq;
    rep.total_delivered += p->delivered;
    rep.stalls += p->stalls;
    rep.foreign += p->foreign;
    rep.writes += p->writes_m;
    const double pps = static_cast<double>(p->delivered_m) / rep.seconds;
    if (rep.min_pair_pps < 0 || pps < rep.min_pair_pps) rep.min_pair_pps = pps;
    rep.max_pair_pps = std::max(rep.max_pair_pps, pps);
  }
  rep.lost = rep.total_sent > rep.total_delivered ? rep.total_sent - rep.total_delivered : 0;
  for (auto& l : loops) {
    rep.latency.merge(l->latency);
    rep.ping.merge(l->ping);
  }
  rep.pings_sent = sh.pings_sent;
  // The ping timer belongs to the ping loop's io_context, which `loops` (declared after `sh`)
  // destroys first: release the timer while its context is alive.
  sh.ping_timer.reset();
  if (sh.error) return *sh.error;
  return rep;
}

}  // namespace derp::bench
