#include "net/tcp_keepalive.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>

namespace derp::net {

void set_tcp_keepalive(int fd, std::chrono::milliseconds period) {
  if (period.count() <= 0 || fd < 0) return;
  const int on = 1;
  const int secs = static_cast<int>(std::clamp<int64_t>(period.count() / 1000, 1, INT32_MAX));
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof secs);
}

}  // namespace derp::net
