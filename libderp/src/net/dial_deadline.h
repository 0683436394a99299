// One deadline for a whole multi-step dial (resolve, connect, upgrade, handshake). When it
// expires it runs the cancel action of the step in progress, so that step fails promptly and
// the caller reports kTimeout instead of the step's own error.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>

namespace derp::net {

class DialDeadline {
 public:
  DialDeadline(boost::asio::any_io_executor ex, std::chrono::milliseconds budget)
      : state_(std::make_shared<State>(ex)), budget_(budget) {
    state_->timer.expires_after(budget);
    state_->timer.async_wait([s = state_](const boost::system::error_code& ec) {
      if (ec) return;  // cancelled: the dial finished in time
      s->expired = true;
      if (s->cancel) s->cancel();
    });
  }
  ~DialDeadline() {
    state_->timer.cancel();
    state_->cancel = nullptr;
  }

  DialDeadline(const DialDeadline&) = delete;
  DialDeadline& operator=(const DialDeadline&) = delete;

  // What to do on expiry while the current step runs (close a socket, cancel a resolver).
  // A step that starts after the deadline expired or was aborted (between two steps, when no
  // cancel action was set) is cancelled at once, so a cancellation never waits for the budget.
  void on_expiry(std::function<void()> cancel) {
    state_->cancel = std::move(cancel);
    if (state_->expired && state_->cancel) state_->cancel();
  }
  bool expired() const { return state_->expired; }
  // Ends the dial now (the owner is closing); reads as expired. Call on the dial's executor.
  void abort() {
    state_->expired = true;
    if (state_->cancel) state_->cancel();
  }
  std::chrono::milliseconds budget() const { return budget_; }

 private:
  struct State {
    explicit State(boost::asio::any_io_executor ex) : timer(ex) {}
    boost::asio::steady_timer timer;
    bool expired = false;
    std::function<void()> cancel;
  };
  std::shared_ptr<State> state_;  // the timer handler may outlive this object
  std::chrono::milliseconds budget_;
};

}  // namespace derp::net
