// A separate plain-HTTP listener serving only GET /metrics (Prometheus text), for scrapers
// that must not reach the relay's own port (ServerOptions::metrics_addr).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <functional>
#include <optional>

#include "derp/result.h"
#include "server/metrics.h"

namespace derp::server {

class MetricsListener {
 public:
  // counters is called once per scrape, from the listener's loop.
  MetricsListener(boost::asio::io_context& io, std::function<CounterMap()> counters,
                  std::chrono::milliseconds request_timeout);

  // Binds and listens (call before the loop runs). kConnect when that fails.
  Result<void> listen(const boost::asio::ip::tcp::endpoint& ep);
  // Starts accepting; call on the loop (or before it runs).
  void start();
  // Closes the listener; call on the loop (or after it stopped).
  void close();

  boost::asio::ip::tcp::endpoint local_endpoint() const { return local_; }

 private:
  void accept_next();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::function<CounterMap()> counters_;
  std::chrono::milliseconds timeout_;
  boost::asio::ip::tcp::endpoint local_;
};

}  // namespace derp::server
