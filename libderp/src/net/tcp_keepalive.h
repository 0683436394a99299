// TCP keepalive on a connected socket, the one rule the relay's accepted sockets and the
// client's dialed sockets share (PROTOCOL.md §4.7; Go's net.Dialer keeps client sockets alive
// the same way).
#pragma once

#include <chrono>

namespace derp::net {

// SO_KEEPALIVE on, with TCP_KEEPIDLE = TCP_KEEPINTVL = `period` (whole seconds, at least 1).
// A non-positive period leaves the socket as it is. Failures are ignored: keepalive is a
// safety net, never a reason to refuse a connection.
void set_tcp_keepalive(int fd, std::chrono::milliseconds period);

}  // namespace derp::net
