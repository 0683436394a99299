// The client half of DERP over WebSocket (PROTOCOL.md §6.4), with Boost.Beast: over an already
// dialed ClientStream (TCP or TLS), GET <target> with Upgrade: websocket and subprotocol `derp`;
// afterwards the DERP byte stream travels in binary messages whose boundaries mean nothing.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <string_view>

#include "derp/result.h"
#include "net/client_stream.h"
#include "net/dial_deadline.h"
#include "net/url.h"

namespace derp::net {

// Runs the WebSocket handshake on `inner` and returns a ClientStream reading and writing the
// DERP stream through it. Errors: kHttp "HTTP <status> from <where>: websocket upgrade refused"
// (or the relay did not select subprotocol derp), kTimeout at the deadline, kIo.
boost::asio::awaitable<Result<std::unique_ptr<ClientStream>>> websocket_upgrade(
    std::unique_ptr<ClientStream> inner, const DerpUrl& url, std::string_view user_agent,
    DialDeadline& deadline);

}  // namespace derp::net
