// The relay's WebSocket receive path on arbitrary bytes: a Beast websocket stream configured as
// the relay configures it (ws_transport.h), accepted on a canned upgrade request, then reading
// whatever frames the peer sent (masking, lengths up to 2^63, control frames, close codes,
// fragmentation) until an error or the end of input. Over an in-memory stream: no sockets.
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>

#include "server/ws_transport.h"

namespace beast = boost::beast;
namespace websocket = beast::websocket;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  boost::asio::io_context ioc;
  beast::test::stream local(ioc);
  beast::test::stream remote(ioc);
  local.connect(remote);
  websocket::stream<beast::test::stream&> ws(local);
  derp::server::configure_websocket(ws, true);
  ws.read_message_max(64 * 1024);  // the relay's bound is 16 MiB; smaller keeps runs fast

  websocket::request_type req;
  req.method(beast::http::verb::get);
  req.target("/derp");
  req.version(11);
  req.set(beast::http::field::host, "127.0.0.1");
  req.set(beast::http::field::upgrade, "websocket");
  req.set(beast::http::field::connection, "Upgrade");
  req.set(beast::http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
  req.set(beast::http::field::sec_websocket_version, "13");
  req.set(beast::http::field::sec_websocket_protocol, "derp");
  beast::error_code ec;
  ws.accept(req, ec);
  if (ec) return 0;

  remote.write_some(boost::asio::buffer(data, size), ec);
  remote.close();
  beast::flat_buffer buf;
  for (int i = 0; i < 64 && !ec; ++i) {
    ws.read_some(buf, 4096, ec);
    buf.consume(buf.size());
  }
  return 0;
}
