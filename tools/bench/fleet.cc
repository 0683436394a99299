// Many connections: --idle (hold N, measure the relay's memory) and --connect-storm (how fast
// the relay accepts and handshakes).
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "bench/load.h"

namespace derp::bench {

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kIdleReadBuffer = 4096;  // idle connections only ever read the handshake
constexpr size_t kIdleWsMaskBuffer = 512;  // over WebSocket they only ever write ClientInfo

// N connections dialed by a fixed number of workers per loop, each taking the next index.
struct Fleet {
  const Target& target;
  int n;
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<std::unique_ptr<Conn>> conns;
  std::vector<NodePrivate> keys;
  std::atomic<int> next{0};
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  int failed = 0;
  std::string first_error;
  ErrorKind first_kind = ErrorKind::kInternal;
  bool keep = true;  // idle: keep the connections; storm: close each after its handshake
  std::vector<Histogram> handshake;  // per loop
  std::vector<std::thread> threads;
  using Guard = asio::executor_work_guard<asio::io_context::executor_type>;
  std::vector<Guard> guards;

  Fleet(const Target& t, int count, int nloops) : target(t), n(count) {
    for (int i = 0; i < nloops; ++i) ios.push_back(std::make_unique<asio::io_context>(1));
    conns.resize(static_cast<size_t>(n));
    handshake.resize(static_cast<size_t>(nloops));
  }

  void start_threads() {
    for (auto& io : ios) {
      guards.emplace_back(io->get_executor());
      threads.emplace_back([p = io.get()] { p->run(); });
    }
  }

  asio::awaitable<void> worker(size_t loop) {
    auto& io = *ios[loop];
    for (;;) {
      const int i = next.fetch_add(1);
      if (i >= n) co_return;
      auto c = std::make_unique<Conn>(io, target.tls, target.websocket, target.tls_context,
                                      kIdleReadBuffer, kIdleWsMaskBuffer);
      const auto t0 = Clock::now();
      auto r = co_await c->dial(target, keys[static_cast<size_t>(i)]);
      const auto dt = Clock::now() - t0;
      std::lock_guard lock(mu);
      if (!r) {
        if (failed++ == 0) {
          first_error = r.error().message;
          first_kind = r.error().kind;
        }
      } else {
        handshake[loop].add(static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(dt).count()));
      }
      if (keep && r) {
        conns[static_cast<size_t>(i)] = std::move(c);
      } else {
        c->close();
      }
      ++finished;
      cv.notify_all();
    }
  }

  // Spawns `per_loop` workers on each loop and waits until every index was tried.
  bool run(int per_loop, std::chrono::milliseconds budget) {
    for (size_t l = 0; l < ios.size(); ++l) {
      for (int w = 0; w < per_loop; ++w) asio::co_spawn(*ios[l], worker(l), asio::detached);
    }
    std::unique_lock lock(mu);
    return cv.wait_until(lock, Clock::now() + budget, [&] { return finished == n; });
  }

  // Idle connections have no operation pending: stop the loops, then close them all here.
  void stop() {
    for (auto& g : guards) g.reset();
    for (auto& io : ios) io->stop();
    for (auto& t : threads) t.join();
    conns.clear();
  }
};

Result<void> raise_fd_limit(int n) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return Error(ErrorKind::kInternal, "getrlimit failed");
  const rlim_t want = static_cast<rlim_t>(n) + 256;
  if (rl.rlim_cur >= want) return Result<void>();
  if (rl.rlim_max < want) {
    return Error(ErrorKind::kUsage,
                 std::to_string(n) + " connections need " + std::to_string(want) +
                     " file descriptors; the hard limit is " + std::to_string(rl.rlim_max));
  }
  rl.rlim_cur = want;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return Error(ErrorKind::kInternal, "setrlimit(RLIMIT_NOFILE) failed");
  }
  return Result<void>();
}

}  // namespace

Result<int64_t> read_rss_kb(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/status";
  std::ifstream f(path);
  if (!f) return Error(ErrorKind::kUsage, "--server-pid: cannot read " + path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return static_cast<int64_t>(std::stoll(line.substr(6)));
  }
  return Error(ErrorKind::kUsage, "--server-pid: no VmRSS in " + path);
}

Result<double> read_cpu_seconds(pid_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  std::ifstream f(path);
  std::string line;
  if (!f || !std::getline(f, line)) {
    return Error(ErrorKind::kUsage, "--server-pid: cannot read " + path);
  }
  // "PID (comm) S ..." where comm may hold spaces and parentheses: fields count from the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return Error(ErrorKind::kUsage, "--server-pid: bad " + path);
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  // After ')': state is field 3; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  if (!rest) return Error(ErrorKind::kUsage, "--server-pid: short " + path);
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

Result<IdleReport> run_idle(const Target& target, int n, int threads, std::chrono::nanoseconds hold,
                            std::optional<pid_t> server_pid) {
  if (auto r = raise_fd_limit(n); !r) return r.error();
  IdleReport rep;
  rep.connections = n;
  if (server_pid) {
    auto rss = read_rss_kb(*server_pid);
    if (!rss) return rss.error();
    rep.server_rss_before_kb = *rss;
  }
  rep.self_rss_before_kb = read_rss_kb(getpid()).ok() ? *read_rss_kb(getpid()) : 0;
  Fleet fleet(target, n, std::max(1, threads));
  fleet.keys.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) fleet.keys.push_back(NodePrivate::generate());
  fleet.start_threads();
  const auto t0 = Clock::now();
  // 64 handshakes in flight per loop: fast, without overflowing the relay's listen backlog.
  const bool done = fleet.run(64, std::chrono::seconds(60) + std::chrono::milliseconds(5) * n);
  rep.open_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::optional<Error> err;
  {
    std::lock_guard lock(fleet.mu);
    if (!done) {
      err = Error(ErrorKind::kTimeout,
                  "--idle: opening " + std::to_string(n) + " connections took too long");
    } else if (fleet.failed > 0) {
      err = Error(fleet.first_kind, "--idle: " + std::to_string(fleet.failed) + " of " +
                                        std::to_string(n) +
                                        " connections failed, first: " + fleet.first_error);
    }
  }
  if (!err) {
    std::this_thread::sleep_for(hold);  // holding the connections is the measurement
    if (server_pid) {
      auto rss = read_rss_kb(*server_pid);
      if (!rss)
        err = rss.error();
      else
        rep.server_rss_after_kb = *rss;
    }
    rep.self_rss_after_kb = read_rss_kb(getpid()).ok() ? *read_rss_kb(getpid()) : 0;
  }
  fleet.stop();
  if (err) return *err;
  return rep;
}

Result<StormReport> run_connect_storm(const Target& target, int n, int concurrency, int threads) {
  if (auto r = raise_fd_limit(concurrency * 2); !r) return r.error();
  const int nloops = std::max(1, threads);
  Fleet fleet(target, n, nloops);
  fleet.keep = false;
  fleet.keys.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) fleet.keys.push_back(NodePrivate::generate());
  fleet.start_threads();
  const auto t0 = Clock::now();
  const bool done = fleet.run(std::max(1, concurrency / nloops),
                              std::chrono::seconds(60) + std::chrono::milliseconds(5) * n);
  StormReport rep;
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  ErrorKind first_kind;
  {
    std::lock_guard lock(fleet.mu);
    first_kind = fleet.first_kind;
    rep.connections = fleet.finished;
    rep.failed = fleet.failed;
    rep.first_error = fleet.first_error;
    for (auto& h : fleet.handshake) rep.handshake.merge(h);
  }
  fleet.stop();
  if (!done) return Error(ErrorKind::kTimeout, "--connect-storm: did not finish in time");
  if (rep.failed == rep.connections) {
    // The layer of the first failure (a TLS or HTTP refusal is not a connect error).
    return Error(first_kind, "--connect-storm: every connection failed, first: " + rep.first_error);
  }
  return rep;
}

}  // namespace derp::bench
