#include "net/endpoint_text.h"

#include <fmt/format.h>

#include <system_error>

namespace derp::net {

std::string endpoint_string(const boost::asio::ip::address& addr, uint16_t port) {
  namespace ip = boost::asio::ip;
  if (addr.is_v6()) {
    const ip::address_v6 v6 = addr.to_v6();
    if (v6.is_v4_mapped()) {
      return fmt::format("{}:{}", ip::make_address_v4(ip::v4_mapped, v6).to_string(), port);
    }
    return fmt::format("[{}]:{}", v6.to_string(), port);
  }
  return fmt::format("{}:{}", addr.to_string(), port);
}

Error listen_error(std::string_view what, std::string_view where, std::error_code ec) {
  const std::string msg = ec == std::errc::address_in_use ? "address in use" : ec.message();
  return Error(ErrorKind::kConnect, fmt::format("{} on {}: {}", what, where, msg), ec);
}

}  // namespace derp::net
