// The byte stream a DERP client talks over. TCP today; TLS and WebSocket streams implement the
// same interface later, so the upgrade and the DERP framing above never change.
#pragma once

#include "net/endpoint_text.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

namespace derp::net {

namespace asio = boost::asio;
using IoResult = std::pair<boost::system::error_code, size_t>;

class ClientStream {
 public:
  virtual ~ClientStream() = default;
  // Reads at least one byte (or fails: eof when the peer closed).
  virtual asio::awaitable<IoResult> read_some(asio::mutable_buffer buf) = 0;
  // Writes all of buf (or fails).
  virtual asio::awaitable<IoResult> write_all(asio::const_buffer buf) = 0;
  // Closes the stream; pending operations complete with operation_aborted. Idempotent.
  virtual void close() = 0;
  virtual std::string local_address() const = 0;  // "127.0.0.1:54321"; "" when unknown
  virtual std::string remote_address() const = 0;
};

std::unique_ptr<ClientStream> make_tcp_client_stream(asio::ip::tcp::socket socket);


}  // namespace derp::net
