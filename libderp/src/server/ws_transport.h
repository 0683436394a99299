// The stream types a relay connection runs over, and the WebSocket pieces of DERP over
// WebSocket (PROTOCOL.md §6.4): which subprotocol offers count, and the server-side settings
// derper uses (subprotocol "derp" echoed, any Origin, no compression, binary messages).
// Included only by connection.h.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket.hpp>
#include <string_view>
#include <type_traits>

#include "net/tls_socket_stream.h"

namespace derp::server {

// TLS: OpenSSL on the socket itself, gathered writes coalesced into full records
// (net/tls_socket_stream.h: ~68 KB less per connection than Asio's ssl::stream).
using TlsStream = net::TlsSocketStream;

template <class S>
struct IsWebSocketStream : std::false_type {};
template <class S>
struct IsWebSocketStream<boost::beast::websocket::stream<S>> : std::true_type {
  static constexpr bool kTls = std::is_same_v<S, TlsStream>;
};
template <class S>
inline constexpr bool is_websocket_stream = IsWebSocketStream<S>::value;
template <class S>
inline constexpr bool is_tls_next_layer = [] {
  if constexpr (is_websocket_stream<S>) return IsWebSocketStream<S>::kTls;
  return false;
}();

// True when Sec-WebSocket-Protocol lists exactly "derp" (derper's websocket.Accept negotiates
// only that; any other offer gets no subprotocol and then a 1008 close).
inline bool offers_derp_subprotocol(const boost::beast::http::request_header<>& req) {
  std::string_view list = req[boost::beast::http::field::sec_websocket_protocol];
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (item == "derp") return true;
  }
  return false;
}

template <class Next>
void configure_websocket(boost::beast::websocket::stream<Next>& ws, bool echo_derp) {
  namespace websocket = boost::beast::websocket;
  ws.set_option(websocket::stream_base::decorator([echo_derp](websocket::response_type& res) {
    if (echo_derp) res.set(boost::beast::http::field::sec_websocket_protocol, "derp");
  }));
  // Our own deadlines cover the handshake; keep-alive frames keep the stream busy.
  ws.set_option(websocket::stream_base::timeout{websocket::stream_base::none(),
                                                websocket::stream_base::none(), false});
  ws.binary(true);
  // One message per gathered write, as derper's one message per flush.
  ws.auto_fragment(false);
  // A DERP frame is at most 64 KiB + header, but a message may hold many frames; reads are
  // by read_some, so this only bounds one message's total length.
  ws.read_message_max(16 * 1024 * 1024);
}

}  // namespace derp::server
