// A token bucket that is told the time (I/O-free: it never reads a clock), so one type serves
// every rate limit — the relay's per-client byte rate (derper's rate.Limiter), the PeerGone
// NotHere limiter, the accept rate, a client honouring ServerInfo's bucket (PROTOCOL.md §7.6) —
// and unit tests drive it with made-up times, as nghttp2's ratelim tests do.
#pragma once

#include <algorithm>
#include <chrono>

namespace derp {

class TokenBucket {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `rate` tokens per second up to `burst`; starts full at `now` (or with `initial` tokens,
  // at most the burst). rate 0: it never refills.
  TokenBucket(double rate, double burst, TimePoint now)
      : TokenBucket(rate, burst, now, std::max(0.0, burst)) {}
  TokenBucket(double rate, double burst, TimePoint now, double initial)
      : rate_(std::max(0.0, rate)),
        burst_(std::max(0.0, burst)),
        tokens_(std::clamp(initial, 0.0, burst_)),
        last_(now) {}

  double rate() const { return rate_; }
  double burst() const { return burst_; }

  // Tokens in the bucket at `now`. A time before the last one seen adds nothing (the clock is
  // the caller's; a step back must not mint tokens).
  double available(TimePoint now) {
    refill(now);
    return tokens_;
  }

  // Takes `cost` tokens when that many are there and says so; otherwise takes none.
  bool try_take(double cost, TimePoint now) {
    refill(now);
    if (tokens_ < cost) return false;
    tokens_ -= cost;
    return true;
  }

  // Takes `cost` whatever is there: the bucket may go into debt, which later takes wait off,
  // so the long-run rate holds for costs above the burst (a client paced by §7.6 sends a
  // packet bigger than the burst once the bucket is full).
  void take(double cost, TimePoint now) {
    refill(now);
    tokens_ -= cost;
  }

  // How long from `now` until `cost` tokens are there (zero when they are). A cost above the
  // burst, or any shortfall with rate 0, never fits: nanoseconds::max().
  std::chrono::nanoseconds wait_for(double cost, TimePoint now) {
    refill(now);
    if (tokens_ >= cost) return std::chrono::nanoseconds(0);
    if (cost > burst_ || rate_ <= 0) return std::chrono::nanoseconds::max();
    // Rounded up, so that after the wait try_take(cost) succeeds.
    return std::chrono::nanoseconds(static_cast<int64_t>((cost - tokens_) / rate_ * 1e9) + 1);
  }

 private:
  void refill(TimePoint now) {
    if (now <= last_) return;
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + elapsed * rate_);
    last_ = now;
  }

  double rate_;
  double burst_;
  double tokens_;
  TimePoint last_;
};

}  // namespace derp
