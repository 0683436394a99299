// derp-bench's connection: one TCP (or TLS) stream to a DERP relay, dialed and handshaked with
// libderp's I/O-free codec (frame.h, handshake.h) on the caller's Asio event loop. No thread per
// connection and no copy per frame: the load engine reads many frames per read_some() straight
// out of the connection's buffer and writes batches of frames with one write.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "derp/frame.h"
#include "derp/key.h"
#include "derp/result.h"

namespace derp::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// Where and how to reach the relay, resolved once before any load starts.
struct Target {
  bool tls = false;
  std::string host_port;                            // "127.0.0.1:3340", for messages
  std::string url;                                  // canonical URL, for reports
  tcp::endpoint endpoint;                           // the first resolved address
  std::string upgrade_request;                      // the HTTP/1.1 upgrade request head
  std::shared_ptr<asio::ssl::context> tls_context;  // https:// only
  std::string sni;                       // https:// SNI / verified name ("" for IP literals)
  std::optional<NodePublic> server_key;  // --server-key pin
};

// Parses the URL, resolves its host (kDns) and prepares TLS (kUsage for a bad --ca-file).
// cert_name: a name the certificate must match instead of the host; "sha256-raw:" pins are
// refused (kUsage) — derp-bench checks names only.
Result<Target> make_target(const std::string& url, const std::string& ca_file, bool insecure,
                           const std::string& cert_name, const std::optional<NodePublic>& pin);

class Conn {
 public:
  // read_buffer: bytes of the read buffer (large for load connections, small for idle ones).
  Conn(asio::io_context& io, bool tls, const std::shared_ptr<asio::ssl::context>& ctx,
       size_t read_buffer);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // TCP connect + TLS + HTTP upgrade + DERP handshake (ServerKey, ClientInfo, ServerInfo).
  // Errors carry the layer: kConnect, kTls, kHttp, kProtocol, kIo.
  asio::awaitable<Result<void>> dial(const Target& target, const NodePrivate& key);
  // TCP connect only, then `hello` is written (the --raw forwarder's protocol).
  asio::awaitable<Result<void>> dial_raw(const tcp::endpoint& ep, std::span<const uint8_t> hello);

  // Reads at least one byte into the read buffer; returns the bytes to parse (bytes left over
  // from the handshake first). Empty span + error code on failure or EOF.
  asio::awaitable<std::span<const uint8_t>> read_some(boost::system::error_code& ec);
  // Writes all of `bytes`.
  asio::awaitable<void> write_all(std::span<const uint8_t> bytes, boost::system::error_code& ec);

  FrameReader& reader() { return reader_; }
  const NodePublic& server_key() const { return server_key_; }
  void close();
  bool is_open() const;

 private:
  tcp::socket& socket();

  std::optional<tcp::socket> plain_;
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
  std::vector<uint8_t> rbuf_;
  size_t pending_off_ = 0;  // handshake leftovers still to hand out: rbuf_[off, off+len)
  size_t pending_len_ = 0;
  FrameReader reader_{FrameReader::Role::kClient};
  NodePublic server_key_;
};

}  // namespace derp::bench
