// The completion token every coroutine here awaits with: errors come back as values
// (`auto [ec, n] = co_await op(kTuple)`), never as exceptions. One definition for the library,
// derp-bench and the test helpers.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace derp::net {

inline constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);

}  // namespace derp::net
