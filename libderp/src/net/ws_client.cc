#include "net/ws_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/websocket/error.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/stream.hpp>

#include "net/error_text.h"
#include "net/awaitable.h"

namespace derp::net {

namespace beast = boost::beast;
namespace websocket = beast::websocket;
using boost::system::error_code;

namespace {

// Presents a ClientStream (whose I/O is coroutines) as the AsyncStream Beast's websocket::stream
// layers on. Each read/write uses the first non-empty buffer: a partial transfer is allowed.
class StreamAdapter {
 public:
  using executor_type = asio::any_io_executor;

  StreamAdapter(asio::any_io_executor ex, std::unique_ptr<ClientStream> inner)
      : ex_(std::move(ex)), inner_(std::move(inner)) {}

  executor_type get_executor() const noexcept { return ex_; }
  ClientStream& inner() { return *inner_; }

  template <typename MutableBufferSequence, typename ReadHandler>
  auto async_read_some(const MutableBufferSequence& buffers, ReadHandler&& handler) {
    return asio::async_initiate<ReadHandler, void(error_code, size_t)>(
        [this](auto h, const MutableBufferSequence& b) {
          asio::mutable_buffer first;
          for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b); ++it) {
            if (asio::mutable_buffer(*it).size() > 0) {
              first = *it;
              break;
            }
          }
          start(inner_->read_some(first), std::move(h), first.size() == 0);
        },
        handler, buffers);
  }

  template <typename ConstBufferSequence, typename WriteHandler>
  auto async_write_some(const ConstBufferSequence& buffers, WriteHandler&& handler) {
    return asio::async_initiate<WriteHandler, void(error_code, size_t)>(
        [this](auto h, const ConstBufferSequence& b) {
          asio::const_buffer first;
          for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b); ++it) {
            if (asio::const_buffer(*it).size() > 0) {
              first = *it;
              break;
            }
          }
          start(inner_->write_all(first), std::move(h), first.size() == 0);
        },
        handler, buffers);
  }

 private:
  template <typename Handler>
  void start(asio::awaitable<IoResult> op, Handler h, bool empty) {
    if (empty) {
      asio::post(ex_, [h = std::move(h)]() mutable { std::move(h)(error_code{}, 0); });
      return;
    }
    asio::co_spawn(ex_, std::move(op),
                   [h = std::move(h)](std::exception_ptr e, IoResult r) mutable {
                     if (e) r = {asio::error::fault, 0};
                     std::move(h)(r.first, r.second);
                   });
  }

  asio::any_io_executor ex_;
  std::unique_ptr<ClientStream> inner_;
};

// Beast's customization points for a user-defined next layer: closing means closing the inner
// stream (TLS close_notify is not worth a round trip when the DERP connection is over).
[[maybe_unused]] void beast_close_socket(StreamAdapter& s) { s.inner().close(); }

[[maybe_unused]] void teardown(beast::role_type, StreamAdapter& s, error_code& ec) {
  s.inner().close();
  ec = {};
}

template <typename TeardownHandler>
void async_teardown(beast::role_type, StreamAdapter& s, TeardownHandler&& handler) {
  s.inner().close();
  asio::post(s.get_executor(),
             [h = std::forward<TeardownHandler>(handler)]() mutable { std::move(h)(error_code{}); });
}

class WsClientStream final : public ClientStream {
 public:
  WsClientStream(asio::any_io_executor ex, std::unique_ptr<ClientStream> inner)
      : local_(inner->local_address()),
        remote_(inner->remote_address()),
        ws_(ex, std::move(inner)) {}

  websocket::stream<StreamAdapter>& ws() { return ws_; }

  asio::awaitable<IoResult> read_some(asio::mutable_buffer buf) override {
    for (;;) {
      auto [ec, n] = co_await ws_.async_read_some(buf, kTuple);
      if (ec == websocket::error::closed) co_return IoResult{asio::error::eof, 0};
      if (ec) co_return IoResult{ec, n};
      if (ws_.got_text()) {
        // §6.4: DERP rides in binary messages only.
        co_return IoResult{asio::error::make_error_code(asio::error::invalid_argument), 0};
      }
      if (n > 0) co_return IoResult{ec, n};
      // An empty binary message (or the empty end of one): nothing to hand out; read on.
    }
  }

  asio::awaitable<IoResult> write_all(asio::const_buffer buf) override {
    auto [ec, n] = co_await ws_.async_write(buf, kTuple);
    co_return IoResult{ec, n};
  }

  void close() override { ws_.next_layer().inner().close(); }
  std::string local_address() const override { return local_; }
  std::string remote_address() const override { return remote_; }

 private:
  std::string local_;
  std::string remote_;
  websocket::stream<StreamAdapter> ws_;
};

}  // namespace

asio::awaitable<Result<std::unique_ptr<ClientStream>>> websocket_upgrade(
    std::unique_ptr<ClientStream> inner, const DerpUrl& url, std::string_view user_agent,
    DialDeadline& deadline) {
  auto ex = co_await asio::this_coro::executor;
  const std::string where = url.host_port();
  auto stream = std::make_unique<WsClientStream>(ex, std::move(inner));
  auto& ws = stream->ws();
  ws.set_option(websocket::stream_base::decorator(
      [ua = std::string(user_agent)](websocket::request_type& req) {
        req.set(beast::http::field::user_agent, ua);
        req.set(beast::http::field::sec_websocket_protocol, "derp");
      }));
  websocket::permessage_deflate no_deflate;  // §6.4: compression off
  no_deflate.client_enable = false;
  ws.set_option(no_deflate);
  ws.binary(true);
  ws.auto_fragment(false);
  deadline.on_expiry([s = stream.get()] { s->close(); });
  websocket::response_type res;
  auto [ec] = co_await ws.async_handshake(res, url.host_header(), url.target, kTuple);
  deadline.on_expiry(nullptr);
  if (deadline.expired()) {
    co_return Error(ErrorKind::kTimeout, "connect to " + where + ": timed out after " +
                                             format_duration(deadline.budget()) +
                                             " (waiting for the WebSocket upgrade)");
  }
  if (ec == websocket::error::upgrade_declined) {
    std::string body = res.body();
    if (auto nl = body.find_first_of("\r\n"); nl != std::string::npos) body.resize(nl);
    if (body.empty()) body = "websocket upgrade refused";
    co_return Error(ErrorKind::kHttp,
                    "HTTP " + std::to_string(res.result_int()) + " from " + where + ": " + body, ec);
  }
  if (ec) {
    // Socket-level failures are I/O; anything Beast says about the response is HTTP.
    const bool io_level = ec.category() == boost::system::system_category() ||
                          ec == asio::error::eof || ec == asio::error::operation_aborted;
    co_return Error(io_level ? ErrorKind::kIo : ErrorKind::kHttp,
                    "WebSocket upgrade with " + where + ": " + lower_first(ec.message()), ec);
  }
  if (res[beast::http::field::sec_websocket_protocol] != "derp") {
    co_return Error(ErrorKind::kHttp, "WebSocket upgrade with " + where +
                                          ": the server did not select subprotocol derp");
  }
  co_return std::unique_ptr<ClientStream>(std::move(stream));
}

}  // namespace derp::net
