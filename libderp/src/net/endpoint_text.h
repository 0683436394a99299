// Text for socket endpoints and listen failures, shared by the client and the relay.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <string>
#include <string_view>
#include <system_error>

#include "derp/result.h"

namespace derp::net {

// "1.2.3.4:80" / "[::1]:80"; an IPv4-mapped IPv6 address is shown as IPv4.
std::string endpoint_string(const boost::asio::ip::address& addr, uint16_t port);
inline std::string endpoint_string(const boost::asio::ip::tcp::endpoint& ep) {
  return endpoint_string(ep.address(), ep.port());
}
inline std::string endpoint_string(const boost::asio::ip::udp::endpoint& ep) {
  return endpoint_string(ep.address(), ep.port());
}

// kConnect "<what> on <where>: address in use" (or the system's message) for a bind/listen
// failure, keeping `ec` as the cause.
Error listen_error(std::string_view what, std::string_view where, std::error_code ec);

}  // namespace derp::net
