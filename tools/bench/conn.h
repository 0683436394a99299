// derp-bench's connection: one TCP, TLS or WebSocket stream to a DERP relay (optionally through
// an HTTP CONNECT proxy), dialed and handshaked with libderp's I/O-free codec (frame.h,
// handshake.h) on the caller's Asio event loop. No thread per connection and no copy per frame:
// the load engine reads many frames per read_some() straight out of the connection's buffer and
// writes batches of frames with one write (over WebSocket: one binary message per batch).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/websocket/stream_fwd.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "derp/derp_map.h"
#include "derp/frame.h"
#include "derp/key.h"
#include "derp/result.h"
#include "net/tls_socket_stream.h"

namespace derp::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Where and how to reach the relay, resolved once before any load starts.
struct Target {
  bool tls = false;
  bool websocket = false;                           // DERP in WebSocket binary messages
  std::string host_port;                            // "127.0.0.1:3340", for messages
  std::string url;                                  // canonical URL, for reports
  tcp::endpoint endpoint;                           // what TCP connects to (relay or proxy)
  std::string http_host;                            // Host header of the upgrade request
  std::string http_target;                          // its request target ("/derp")
  std::string upgrade_request;                      // the HTTP/1.1 upgrade request head
  std::shared_ptr<asio::ssl::context> tls_context;  // https:// only
  std::string sni;                       // https:// SNI / verified name ("" for IP literals)
  std::string pin_hex;                   // sha256-raw: pin (lower-case hex), checked after TLS
  std::string pin_host;                  // the URL's host: a pinned certificate must fit it too
  std::optional<NodePublic> server_key;  // --server-key pin
  std::string proxy;                     // "http://host:port" when tunnelled, else ""
  std::string connect_request;           // the CONNECT request head (with a proxy)
  int region = 0;                        // --derp-map: the region's ID (0 without)
  std::string node;                      // --derp-map: the Name of the node used

  // "tcp", "tls", "websocket" or "websocket+tls".
  std::string transport() const;
};

struct TargetOptions {
  std::string url;                           // SERVER ("" with a region)
  std::optional<DERPRegion> region;          // --derp-map/--region: dial its first usable node
  std::string ca_file;
  bool insecure = false;
  std::string cert_name;                     // a name the certificate must match, or a pin
  std::optional<NodePublic> pin;             // --server-key
  bool websocket = false;
  std::string proxy;                         // --proxy URL; "" = HTTPS_PROXY/HTTP_PROXY/NO_PROXY
};

// Parses the URL (or picks the region's node), resolves the host or the proxy (kDns) and
// prepares TLS (kUsage for a bad --ca-file or a malformed "sha256-raw:" pin). A region's node is the first that is not STUNOnly and accepts
// TCP (IPv4/IPv6 fields, DERPPort, CertName, InsecureForTests honoured, as libderp's client);
// through a proxy, the first that is not STUNOnly (the proxy resolves and dials it).
Result<Target> make_target(const TargetOptions& options);

class Conn {
 public:
  // read_buffer: bytes of the read buffer (large for load connections, small for idle ones).
  // ws_write_buffer: over WebSocket, the buffer the client masks a message in before writing it
  // (a batch larger than it goes out in several socket writes).
  Conn(asio::io_context& io, bool tls, bool websocket,
       const std::shared_ptr<asio::ssl::context>& ctx, size_t read_buffer,
       size_t ws_write_buffer = 4096);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // TCP connect (+ CONNECT through the proxy) + TLS + HTTP or WebSocket upgrade + DERP
  // handshake (ServerKey, ClientInfo, ServerInfo).
  // Errors carry the layer: kConnect, kTls, kHttp, kProtocol, kIo.
  asio::awaitable<Result<void>> dial(const Target& target, const NodePrivate& key);
  // TCP connect only, then `hello` is written (the --raw forwarder's protocol).
  asio::awaitable<Result<void>> dial_raw(const tcp::endpoint& ep, std::span<const uint8_t> hello);

  // Reads at least one byte into the read buffer; returns the bytes to parse (bytes left over
  // from the handshake first). Empty span + error code on failure or EOF.
  asio::awaitable<std::span<const uint8_t>> read_some(boost::system::error_code& ec);
  // Writes all of `bytes` (over WebSocket: as one binary message).
  asio::awaitable<void> write_all(std::span<const uint8_t> bytes, boost::system::error_code& ec);

  FrameReader& reader() { return reader_; }
  const NodePublic& server_key() const { return server_key_; }
  void close();
  bool is_open() const;

 private:
  // OpenSSL on the socket itself, as the relay's TLS connections (net/tls_socket_stream.h):
  // no BIO pair and no staging copies, which Asio's ssl::stream costs a load client per byte.
  using TlsStream = net::TlsSocketStream;
  // No permessage-deflate (PROTOCOL.md: compression off): its code is not even compiled in.
  using WsStream = boost::beast::websocket::stream<tcp::socket, false>;
  using WssStream = boost::beast::websocket::stream<TlsStream, false>;

  tcp::socket& socket();
  const tcp::socket& socket() const;
  TlsStream* tls_layer();
  asio::awaitable<Result<void>> proxy_connect(const Target& target);
  asio::awaitable<Result<void>> derp_upgrade(const Target& target);
  asio::awaitable<Result<void>> websocket_upgrade(const Target& target);

  // Exactly one of these is set.
  std::optional<tcp::socket> plain_;
  std::unique_ptr<TlsStream> tls_;
  std::unique_ptr<WsStream> ws_;
  std::unique_ptr<WssStream> wss_;
  size_t ws_write_buffer_;
  std::vector<uint8_t> rbuf_;
  size_t pending_off_ = 0;  // handshake leftovers still to hand out: rbuf_[off, off+len)
  size_t pending_len_ = 0;
  FrameReader reader_{FrameReader::Role::kClient};
  NodePublic server_key_;
};

}  // namespace derp::bench
