// One accepted connection over a byte stream: the HTTP/1.1 front (Beast), the DERP handshake,
// then the steady-state reader and the gathered writer. Templated on the stream: plain TCP
// (tcp::socket), TLS (TlsSocketStream), and DERP over WebSocket on either (PROTOCOL.md §6.4),
// which a TCP/TLS connection hands its stream to when the upgrade asks for it.
// Included only by connection_{tcp,tls}.cc and connection_ws.h (one stream type per translation
// unit); server.cc starts connections through server/connection_start.h.
#pragma once

#include <fmt/format.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>

#include "derp/frame.h"
#include "derp/handshake.h"
#include "server/client_conn.h"
#include "server/connection_start.h"
#include "server/http_routes.h"
#include "server/metrics.h"
#include "server/relay.h"
#include "server/tls_port80.h"
#include "server/ws_transport.h"

namespace derp::server {

namespace asio = boost::asio;
namespace beast = boost::beast;

// Plain TCP's steady-state reader needs a non-blocking read attempt and a wait for readability
// that holds no buffer (so idle connections pin no read chunk). TLS and WebSocket streams may
// hold bytes above the socket, so they read through the stream instead (read_async).
inline void prepare_stream(asio::ip::tcp::socket& s, bool raw_reads) {
  boost::system::error_code ec;
  s.set_option(asio::ip::tcp::no_delay(true), ec);
  if (raw_reads) s.non_blocking(true, ec);
}
inline std::string remote_string(asio::ip::tcp::socket& s, Presence* p) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "unknown";
  auto addr = ep.address();
  if (addr.is_v4()) {
    auto b = addr.to_v4().to_bytes();
    p->ip16 = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, b[0], b[1], b[2], b[3]};
  } else {
    auto b = addr.to_v6().to_bytes();
    std::memcpy(p->ip16.data(), b.data(), 16);
  }
  p->port = ep.port();
  return addr.is_v6() ? fmt::format("[{}]:{}", addr.to_string(), ep.port())
                      : fmt::format("{}:{}", addr.to_string(), ep.port());
}

// Hands an upgraded stream to a new WebSocket connection. Defined in connection_ws.h and
// instantiated in connection_ws_tcp.cc / connection_ws_tls.cc only, so that the TCP and TLS
// translation units do not also compile the WebSocket connection.
template <class Stream>
void start_websocket_connection(Stream stream, std::shared_ptr<void> held,
                                const ConnectionShared& shared, Request req, std::string remote,
                                const Presence& presence);

template <class Stream>
class Connection final : public ClientConn {
 public:
  Connection(Stream stream, Relay& relay, Stats& stats, ChunkPool& pool, const ServerOptions& opts,
             const NodePublic& server_public)
      : ClientConn(relay, stats, pool, opts),
        stream_(std::move(stream)),
        server_public_(server_public),
        hs_timer_(stream_.get_executor()),
        write_timer_(stream_.get_executor()),
        ka_timer_(stream_.get_executor()),
        rate_timer_(stream_.get_executor()) {}

  ~Connection() override {
    if (rchunk_) ChunkPool::unref(rchunk_);
  }

  auto executor_for_start() { return stream_.get_executor(); }

  // Keeps what the stream borrows (the TLS context it was made from) alive with it.
  void hold(std::shared_ptr<void> p) { held_ = std::move(p); }
  // Serve derper's --http-port handler (redirects to https://) instead of the relay's routes.
  void set_port80(std::string https_host, uint16_t https_port) {
    port80_ = true;
    https_host_ = std::move(https_host);
    https_port_ = https_port;
  }

  // Call on the connection's own executor.
  void start() {
    remote_ = remote_string(lowest(), &presence_scratch_);
    prepare_stream(lowest(), kRawReads);
    if constexpr (kTls) {
      arm_handshake_deadline();
      sniff_then_handshake();
    } else {
      read_request();
    }
  }

  // Go's TLS servers answer plain HTTP on a TLS port with a 400 that names the mistake
  // (net/http's "Client sent an HTTP request to an HTTPS server."), not a failed handshake's
  // silence; so does the relay. The first byte is peeked (MSG_PEEK) and left for OpenSSL: a TLS
  // record starts with a content type (0x14..0x17) or an SSLv2 length byte, never with an ASCII
  // capital as an HTTP method does. The handshake deadline bounds the wait.
  void sniff_then_handshake() {
    if constexpr (kTls) {
      lowest().async_wait(asio::socket_base::wait_read, [self = self_ptr()](
                                                            boost::system::error_code ec) {
        if (self->closed_) return;
        if (ec) return self->close("");
        uint8_t first = 0;
        boost::system::error_code peek_ec;
        const size_t n = self->lowest().receive(asio::buffer(&first, 1),
                                                asio::socket_base::message_peek, peek_ec);
        if (peek_ec == asio::error::would_block || peek_ec == asio::error::try_again) {
          return self->sniff_then_handshake();
        }
        if (peek_ec || n == 0) return self->close("");
        if (first >= 'A' && first <= 'Z') return self->refuse_plain_http();
        self->stream_.async_handshake(
            asio::ssl::stream_base::server, [self](boost::system::error_code hec) {
              if (self->closed_) return;
              if (hec) {
                if (self->opts_.verbose) {
                  self->log(
                      fmt::format("{}: TLS handshake failed: {}", self->remote_, hec.message()));
                }
                return self->close("");
              }
              self->read_request();
            });
      });
    }
  }

  void refuse_plain_http() {
    static constexpr std::string_view kReply =
        "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
    if (opts_.verbose) log(fmt::format("{}: plain HTTP on the TLS port: answered 400", remote_));
    asio::async_write(lowest(), asio::buffer(kReply.data(), kReply.size()),
                      [self = self_ptr()](boost::system::error_code, size_t) {
                        // Read what the request sent, so closing sends FIN, not a reset that
                        // could discard the 400 before the client reads it.
                        boost::system::error_code ec;
                        std::array<char, 4096> sink;
                        for (int i = 0; i < 16 && self->lowest().available(ec) > 0 && !ec; ++i) {
                          self->lowest().receive(asio::buffer(sink), 0, ec);
                        }
                        self->close("");
                      });
  }

  // A WebSocket connection's start: the upgrade request was read by the TCP/TLS connection
  // that handed over its stream (PROTOCOL.md §6.4).
  void start_websocket(Request req, std::string remote, const Presence& presence) {
    static_assert(kWs);
    remote_ = std::move(remote);
    presence_scratch_ = presence;
    const bool derp = offers_derp_subprotocol(req);
    configure_websocket(stream_, derp);
    arm_handshake_deadline();
    stream_.async_accept(req, [self = self_ptr(), derp](boost::system::error_code ec) {
      if (self->closed_) return;
      if (ec) return self->refuse("WebSocket handshake: " + ec.message());
      if (!derp) {
        // derper accepts, then closes: the client offered no exact "derp" subprotocol.
        self->log(
            fmt::format("{}: WebSocket client must speak the derp subprotocol", self->remote_));
        return self->ws_close(CloseCode::kPolicy, "client must speak the derp subprotocol");
      }
      self->stats_.add(Counter::kWebSocketAccepts);
      self->ws_open_ = true;
      self->start_derp(/*fast_start=*/true, /*not_ideal=*/false);  // no 101-DERP inside WS
    });
  }

  void close_async(std::string why, CloseCode code) override {
    asio::post(stream_.get_executor(),
               [self = self_ptr(), why = std::move(why), code] { self->close_with(code, why); });
  }

  void wake_from_queue_wait() override {
    asio::post(stream_.get_executor(), [self = self_ptr()] {
      if (self->closed_ || self->ws_closing_ || !self->queue_parked_) return;
      self->queue_parked_ = false;
      self->rate_timer_.cancel();
      if (self->consume()) self->read_loop();
    });
  }

  void resume_reads_async() override {
    asio::post(stream_.get_executor(), [self = self_ptr()] {
      self->stall_reads.store(false, std::memory_order_relaxed);
      if (self->closed_ || self->ws_closing_ || !self->read_parked_) return;
      self->read_parked_ = false;
      self->read_loop();
    });
  }

 private:
  std::shared_ptr<Connection> self_ptr() {
    return std::static_pointer_cast<Connection>(shared_from_this());
  }
  void log(std::string_view line) {
    if (opts_.log) opts_.log(line);
  }
  auto& lowest() { return beast::get_lowest_layer(stream_); }

  // Writes every buffer: a gathered socket write, one coalescing TLS write loop, or one binary
  // WebSocket message.
  template <class Buffers, class Handler>
  void write_all(const Buffers& buffers, Handler&& handler) {
    if constexpr (kWs) {
      stream_.async_write(buffers, std::forward<Handler>(handler));
    } else {
      asio::async_write(stream_, buffers, std::forward<Handler>(handler));
    }
  }

  // PROTOCOL.md §6.4: a text message closes the connection (1003).
  bool ws_binary_ok() {
    if constexpr (kWs) {
      if (stream_.got_text()) {
        log(fmt::format("{}: WebSocket text message, closing", peer_or_remote()));
        ws_close_raw(beast::websocket::close_code::unknown_data, "expected binary message");
        return false;
      }
    }
    return true;
  }

  void ws_close(CloseCode code, std::string why) {
    ws_close_raw(static_cast<beast::websocket::close_code>(code), std::move(why));
  }

  // Ends the connection: a WebSocket client (once its upgrade was accepted) first gets a close
  // frame with `code`, as Go's websocket library sends when derper closes; TCP and TLS clients
  // see the stream end.
  void close_with(CloseCode code, const std::string& why) {
    if constexpr (kWs) {
      if (!closed_ && ws_open_) return ws_close(code, why);
    }
    close(why);
  }

  // Sends the close frame (after a write in flight, which Beast waits for), stops reading and
  // writing DERP, and closes the stream when the peer answers or after the handshake timeout.
  // The reason text is cut to the 123 bytes a close frame holds.
  void ws_close_raw(beast::websocket::close_code code, std::string why) {
    if constexpr (kWs) {
      if (closed_ || ws_closing_) return;
      ws_closing_ = true;
      shut_queues();
      hs_timer_.cancel();
      if (opts_.verbose) {
        log(fmt::format("{}: WebSocket close {} ({})", peer_or_remote(), static_cast<int>(code),
                        why));
      }
      beast::websocket::close_reason reason(code);
      reason.reason.assign(why.data(), std::min<size_t>(why.size(), 123));
      stream_.async_close(reason, [self = self_ptr(), why](boost::system::error_code) {
        self->close(why);
      });
      // Do not wait forever for the peer's close frame.
      hs_timer_.expires_after(opts_.handshake_timeout);
      hs_timer_.async_wait([self = self_ptr(), why](boost::system::error_code ec) {
        if (!ec) self->close(why);
      });
    } else {
      (void)code;
      close(why);
    }
  }

  std::string peer_or_remote() { return handshake_done_ ? peer_name() : remote_; }

  // ---- Deadlines for the HTTP head and each handshake step.
  void arm_handshake_deadline() {
    hs_timer_.expires_after(opts_.handshake_timeout);
    hs_timer_.async_wait([self = self_ptr()](boost::system::error_code ec) {
      if (ec || self->closed_ || self->handshake_done_) return;
      self->log(fmt::format("{}: handshake timeout after {} ms", self->remote_,
                            self->opts_.handshake_timeout.count()));
      self->close_with(CloseCode::kPolicy, "handshake timeout");
    });
  }

  // ---- HTTP front.
  void read_request() {
    hs_->parser.emplace();
    hs_->parser->header_limit(static_cast<uint32_t>(opts_.max_header_bytes));
    hs_->parser->body_limit(16 * 1024);
    arm_handshake_deadline();
    beast::http::async_read_header(
        stream_, hs_->hbuf, *hs_->parser,
        [self = self_ptr()](boost::system::error_code ec, size_t) { self->on_head(ec); });
  }

  void on_head(boost::system::error_code ec) {
    if (closed_) return;
    if (ec) {
      if (ec == beast::http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::operation_aborted || ec == asio::error::connection_reset) {
        close("");
        return;
      }
      log(fmt::format("{}: malformed HTTP request: {}", remote_, ec.message()));
      hs_->res = bad_request_response(ec.message());
      write_response_then_close();
      return;
    }
    const Request& req = hs_->parser->get();
    std::string_view target = req.target();
    target = target.substr(0, target.find('?'));
    Upgrade up = target == "/derp" ? classify_upgrade(req) : Upgrade::kNone;
    if (up == Upgrade::kDerp && !port80_) {
      start_derp(wants_fast_start(req), req.find("Ideal-Node") != req.end());
      return;
    }
    if (up == Upgrade::kWebSocketDerp && !port80_) {
      if constexpr (!kWs) {
        if (hs_->hbuf.size() > 0) {
          // RFC 6455: the client waits for the 101 before sending frames.
          return refuse("data sent before the WebSocket handshake completed");
        }
        hs_timer_.cancel();
        closed_ = true;  // the stream moves to the WebSocket connection
        start_websocket_connection<Stream>(std::move(stream_), held_,
                                           {relay_, stats_, pool_, opts_, server_public_},
                                           hs_->parser->release(), remote_, presence_scratch_);
      }
      return;
    }
    if (port80_) {
      if (!hs_->parser->is_done()) {
        hs_->res = bad_request_response("request body on the plain-HTTP port");
        return write_response_then_close();
      }
      return respond();
    }
    if (!hs_->parser->is_done()) {
      beast::http::async_read(stream_, hs_->hbuf, *hs_->parser,
                              [self = self_ptr()](boost::system::error_code ec, size_t) {
                                if (self->closed_) return;
                                if (ec) {
                                  self->hs_->res = bad_request_response(ec.message());
                                  self->write_response_then_close();
                                  return;
                                }
                                self->respond();
                              });
      return;
    }
    respond();
  }

  void respond() {
    RouteContext ctx;
    ctx.debug_allowed = relay_.route_hooks().debug_allow.contains(presence_scratch_.ip16);
    ctx.counters = [this] { return snapshot_counters(stats_, relay_); };
    ctx.hooks = &relay_.route_hooks();
    hs_->res =
        port80_ ? route_port80(hs_->parser->get(), ctx, https_host_, https_port_) : route_http(hs_->parser->get(), ctx);
    beast::http::async_write(stream_, hs_->res,
                             [self = self_ptr()](boost::system::error_code ec, size_t) {
                               if (self->closed_) return;
                               if (ec || !self->hs_->res.keep_alive()) {
                                 self->close("");
                                 return;
                               }
                               self->read_request();
                             });
  }

  void write_response_then_close() {
    hs_->res.keep_alive(false);
    beast::http::async_write(
        stream_, hs_->res, [self = self_ptr()](boost::system::error_code, size_t) { self->close(""); });
  }

  // ---- DERP handshake (PROTOCOL.md §3, §6.2).
  void start_derp(bool fast_start, bool not_ideal) {
    not_ideal_ = not_ideal;
    hs_->parser.reset();
    hs_->out = fast_start ? std::string() : switching_protocols_head(server_public_);
    std::array<uint8_t, kFrameHeaderLen + 40> key_frame{};
    const size_t n = encode_server_key(key_frame, server_public_);
    hs_->out.append(reinterpret_cast<const char*>(key_frame.data()), n);
    arm_handshake_deadline();
    // The 101 head and the ServerKey frame go out in one write, as derper does.
    write_all(asio::buffer(hs_->out), [self = self_ptr()](boost::system::error_code ec, size_t) {
      if (self->closed_) return;
      if (ec) return self->close("writing ServerKey: " + ec.message());
      std::string().swap(self->hs_->out);
      self->arm_handshake_deadline();
      self->read_client_info();
    });
  }

  void read_client_info() {
    size_t need = kFrameHeaderLen;
    if (hs_->hbuf.size() >= kFrameHeaderLen) {
      const auto* p = static_cast<const uint8_t*>(hs_->hbuf.data().data());
      const FrameHeader h = read_frame_header(p);
      if (h.type != static_cast<uint8_t>(FrameType::kClientInfo)) {
        return refuse(fmt::format("first frame is {}, not ClientInfo", frame_type_name(h.type)));
      }
      bool skip = false;
      if (auto ok = FrameReader::check_header(FrameReader::Role::kServer, h, &skip); !ok) {
        return refuse(ok.error().message);
      }
      need = kFrameHeaderLen + h.length;
      if (hs_->hbuf.size() >= need) return on_client_info(h.length);
    }
    stream_.async_read_some(
        hs_->hbuf.prepare(need - hs_->hbuf.size()),
        [self = self_ptr()](boost::system::error_code ec, size_t n) {
          if (self->closed_) return;
          if (ec) {
            return self->refuse("connection ended before ClientInfo (" + ec.message() + ")");
          }
          if (!self->ws_binary_ok()) return;
          self->hs_->hbuf.commit(n);
          self->read_client_info();
        });
  }

  void refuse(std::string why) {
    log(fmt::format("{}: DERP handshake refused: {}", remote_, why));
    close_with(CloseCode::kProtocol, why);
  }

  void on_client_info(uint32_t len) {
    const auto* p = static_cast<const uint8_t*>(hs_->hbuf.data().data()) + kFrameHeaderLen;
    auto opened = open_client_info(opts_.private_key, {p, len});
    if (!opened) return refuse("bad ClientInfo: " + opened.error().message);
    hs_->hbuf.consume(kFrameHeaderLen + len);

    const bool mesh = !opts_.mesh_key.is_zero() && opened->info.mesh_key.equals(opts_.mesh_key);
    if (!mesh && !admit(*opened)) return;
    admitted(*opened, mesh);
  }

  // ---- Admission (PROTOCOL.md §4.11; server/admission.h). True: go on now. False: refused,
  // or the admission URL is being asked and admitted() follows from its answer.
  bool admit(const OpenedClientInfo& opened) {
    Admission& adm = relay_.admission();
    if (auto why = adm.check_allow_keys(opened.client)) {
      refuse_client(opened.client, Counter::kRefusedAllowKeys, *why);
      return false;
    }
    if (!adm.asks_url()) return true;
    arm_handshake_deadline();
    std::string ip = remote_.substr(0, remote_.rfind(':'));
    if (ip.size() > 2 && ip.front() == '[') ip = ip.substr(1, ip.size() - 2);
    adm.verify_async(opened.client, std::move(ip),
                     [self = self_ptr(), opened](std::optional<std::string> refusal) {
                       asio::post(self->stream_.get_executor(), [self, opened, refusal] {
                         if (self->closed_) return;
                         if (refusal) {
                           self->refuse_client(opened.client, Counter::kRefusedVerifyUrl,
                                               *refusal);
                         } else {
                           self->admitted(opened, false);
                         }
                       });
                     });
    return false;
  }

  void refuse_client(const NodePublic& key, Counter counter, const std::string& why) {
    stats_.add(counter);
    log(fmt::format("{}: refused client {}: {}", remote_, key.to_string(), why));
    close_with(CloseCode::kPolicy, "refused: " + why);
  }

  void admitted(const OpenedClientInfo& opened_info, bool mesh) {
    const OpenedClientInfo* opened = &opened_info;
    Presence pres = presence_scratch_;
    pres.key = opened->client;
    pres.flags = 0;
    if (opened->info.is_prober) pres.flags |= peer_present_flags::kIsProber;
    if (mesh) pres.flags |= peer_present_flags::kIsMeshPeer;
    if (not_ideal_) pres.flags |= peer_present_flags::kNotIdeal;
    if (pres.flags == 0) pres.flags = peer_present_flags::kIsRegular;
    set_identity(pres, mesh);
    handshake_done_ = true;
    hs_timer_.cancel();
    if (not_ideal_) stats_.add(Counter::kGaugeNotIdealConnections);

    ServerInfo info;
    if (opts_.advertise_client_rate && opts_.client_rate_bytes_per_second > 0 && !mesh) {
      info.token_bucket_bytes_per_second = opts_.client_rate_bytes_per_second;
      info.token_bucket_bytes_burst = rate_burst(opts_);
    }
    set_preamble(encode_server_info_frame(opts_.private_key, opened->client, info));
    relay_.register_client(shared_from_this());
    if (opts_.verbose) {
      log(fmt::format("{}: connected{}", peer_name(), mesh ? " (mesh peer)" : ""));
    }
    arm_keep_alive();

    // Frames that came with (or right after) ClientInfo are the start of the DERP stream.
    if (hs_->hbuf.size() > 0) {
      rchunk_ = pool_.acquire();
      std::memcpy(rchunk_->data(), hs_->hbuf.data().data(), hs_->hbuf.size());
      rbegin_ = 0;
      rend_ = hs_->hbuf.size();
    }
    hs_.reset();
    if (rend_ > rbegin_ && !consume()) return;
    read_loop();
  }

  // ---- Steady-state reader.
  void read_loop() {
    if constexpr (!kRawReads) {
      read_async();
    } else {
      read_raw();
    }
  }

  void read_raw() {
    for (int i = 0; i < 16; ++i) {
      if (closed_) return;
      if (stall_reads.load(std::memory_order_relaxed)) {  // fault injection
        read_parked_ = true;
        return;
      }
      make_room();
      boost::system::error_code ec;
      const size_t n = stream_.read_some(
          asio::buffer(rchunk_->data() + rend_, ChunkPool::kChunkSize - rend_), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        if (rbegin_ == rend_) {
          // Nothing partial held: give the chunk back while idle.
          ChunkPool::unref(rchunk_);
          rchunk_ = nullptr;
          stream_.async_wait(Stream::wait_read, [self = self_ptr()](boost::system::error_code ec) {
            if (self->closed_) return;
            if (ec) return self->close("read: " + ec.message());
            self->read_loop();
          });
        } else {
          stream_.async_read_some(
              asio::buffer(rchunk_->data() + rend_, ChunkPool::kChunkSize - rend_),
              [self = self_ptr()](boost::system::error_code ec, size_t n) {
                if (self->closed_) return;
                if (ec) return self->close(read_end_reason(ec));
                self->rend_ += n;
                if (self->consume()) self->read_loop();
              });
        }
        return;
      }
      if (ec) return close(read_end_reason(ec));
      rend_ += n;
      if (!consume()) return;
    }
    // Let the loop's other connections run before reading more.
    asio::post(stream_.get_executor(), [self = self_ptr()] { self->read_loop(); });
  }

  // TLS and WebSocket: bytes may wait inside OpenSSL or Beast, so every read goes through the
  // stream. While idle (no partial frame, nothing buffered above the socket) the read lands in
  // a few bytes of the connection itself instead of a pool chunk, so an idle connection still
  // pins no chunk; those bytes are then moved into a chunk and the rest read in place.
  void read_async() {
    if (closed_ || ws_closing_) return;
    if (stall_reads.load(std::memory_order_relaxed)) {  // fault injection
      read_parked_ = true;
      return;
    }
    if (rbegin_ == rend_ && !more_buffered()) {
      if (rchunk_ != nullptr) {
        ChunkPool::unref(rchunk_);
        rchunk_ = nullptr;
        rbegin_ = rend_ = 0;
      }
      stream_.async_read_some(
          asio::buffer(idle_buf_), [self = self_ptr()](boost::system::error_code ec, size_t n) {
            if (self->closed_) return;
            if (ec) return self->close(read_end_reason(ec));
            if (!self->ws_binary_ok()) return;
            self->make_room();
            std::memcpy(self->rchunk_->data() + self->rend_, self->idle_buf_.data(), n);
            self->rend_ += n;
            if (self->consume()) self->read_async();
          });
      return;
    }
    make_room();
    stream_.async_read_some(asio::buffer(rchunk_->data() + rend_, ChunkPool::kChunkSize - rend_),
                            [self = self_ptr()](boost::system::error_code ec, size_t n) {
                              if (self->closed_) return;
                              if (ec) return self->close(read_end_reason(ec));
                              if (!self->ws_binary_ok()) return;
                              self->rend_ += n;
                              if (self->consume()) self->read_async();
                            });
  }

  // Bytes already received and decrypted/unframed above the socket.
  bool more_buffered() {
    if constexpr (kWs) {
      if (!stream_.is_message_done()) return true;
      if constexpr (kWsOverTls) return SSL_has_pending(stream_.next_layer().native_handle()) == 1;
      return false;
    } else if constexpr (kTls) {
      // Decrypted bytes, or (read-ahead) records already taken from the socket.
      return SSL_has_pending(stream_.native_handle()) == 1;
    }
    return false;
  }

  static std::string read_end_reason(boost::system::error_code ec) {
    if (ec == asio::error::eof) return "closed by client";
    return "read: " + ec.message();
  }

  // Ensures the read chunk has room for the rest of a partial frame and a decent read.
  void make_room() {
    if (rchunk_ == nullptr) {
      rchunk_ = pool_.acquire();
      rbegin_ = rend_ = 0;
      return;
    }
    const bool mine = ChunkPool::unique(rchunk_);
    if (rbegin_ == rend_ && mine) {
      rbegin_ = rend_ = 0;
      return;
    }
    const size_t held = rend_ - rbegin_;
    const size_t need =
        std::max(pending_frame_size(rchunk_->data() + rbegin_, held), kFrameHeaderLen);
    if (ChunkPool::kChunkSize - rbegin_ >= need && ChunkPool::kChunkSize - rend_ >= kMinTail) {
      return;
    }
    if (mine) {
      std::memmove(rchunk_->data(), rchunk_->data() + rbegin_, held);
    } else {
      // Queued packets still point into this chunk: only the partial tail moves.
      Chunk* fresh = pool_.acquire();
      std::memcpy(fresh->data(), rchunk_->data() + rbegin_, held);
      ChunkPool::unref(rchunk_);
      rchunk_ = fresh;
    }
    rbegin_ = 0;
    rend_ = held;
  }

  bool consume() {
    auto r = process_frames(rchunk_, rchunk_->data() + rbegin_, rend_ - rbegin_);
    if (!r) {
      log(fmt::format("{}: closing: {}", peer_name(), r.error().message));
      close_with(CloseCode::kProtocol, r.error().message);
      return false;
    }
    rbegin_ += *r;
    if (closed_) return false;
    if (take_queue_blocked()) {
      // A destination's queue is full and draining: read nothing more from this sender until
      // it has room (wake_from_queue_wait) or queue_wait has passed (then drop its oldest).
      queue_parked_ = true;
      const uint64_t gen = ++queue_park_gen_;
      rate_timer_.expires_after(opts_.queue_wait);
      rate_timer_.async_wait([self = self_ptr(), gen](boost::system::error_code ec) {
        if (ec || self->closed_ || !self->queue_parked_ || self->queue_park_gen_ != gen) return;
        self->queue_parked_ = false;
        self->force_next_enqueue();
        if (self->consume()) self->read_loop();
      });
      return false;
    }
    if (const auto wait = take_throttle(); wait.count() > 0) {
      // Out of receive tokens: read nothing more until they are back (TCP back-pressure).
      rate_timer_.expires_after(wait);
      rate_timer_.async_wait([self = self_ptr()](boost::system::error_code ec) {
        if (ec || self->closed_) return;
        if (self->consume()) self->read_loop();
      });
      return false;
    }
    return true;
  }

  // ---- Writer.
  void post_flush() override {
    if (relay_.faults().any()) {
      if (const auto d = relay_.faults().latency(); d.count() > 0) {
        // Latency fault: every write waits; the one-off timer allocation is fault-only.
        auto t = std::make_shared<asio::steady_timer>(stream_.get_executor(), d);
        t->async_wait([self = self_ptr(), t](boost::system::error_code) { self->flush(); });
        return;
      }
    }
    asio::post(stream_.get_executor(), [self = self_ptr()] { self->flush(); });
  }

  void flush() {
    if (closed_ || write_in_progress_ || ws_closing_) return;
    if (!begin_batch()) return;
    write_in_progress_ = true;
    write_started_ = std::chrono::steady_clock::now();
    if (!write_timer_armed_ && write_timeout().count() > 0) {
      arm_write_timer(write_timeout());
    }
    const auto& bufs = batch_buffers();
    write_all(std::span<const asio::const_buffer>(bufs.data(), bufs.size()),
              [self = self_ptr()](boost::system::error_code ec, size_t) {
                self->write_in_progress_ = false;
                const bool more = self->end_batch(!ec);
                if (self->closed_) return;
                if (ec) return self->close("write: " + ec.message());
                if (more) self->flush();
              });
  }

  void arm_write_timer(std::chrono::steady_clock::duration d) {
    write_timer_armed_ = true;
    write_timer_.expires_after(d);
    write_timer_.async_wait([self = self_ptr()](boost::system::error_code ec) {
      self->write_timer_armed_ = false;
      if (ec || self->closed_ || !self->write_in_progress_) return;
      const auto elapsed = std::chrono::steady_clock::now() - self->write_started_;
      if (elapsed >= self->write_timeout()) {
        self->stats_.add(Counter::kWriteTimeouts);
        self->log(fmt::format("{}: write timeout after {} ms, closing", self->peer_name(),
                              self->write_timeout().count()));
        // Reset rather than FIN: the kernel would otherwise keep the stalled bytes and the
        // socket alive until the peer read them all.
        boost::system::error_code lec;
        self->lowest().set_option(asio::socket_base::linger(true, 0), lec);
        self->close("write timeout");
        return;
      }
      self->arm_write_timer(self->write_timeout() - elapsed);
    });
  }

  // derper's privilegedWriteTimeout: a mesh peer carries every forwarded packet of its relay,
  // so a stall there is worth waiting out far longer than one client's.
  std::chrono::milliseconds write_timeout() const {
    return is_mesh() ? opts_.mesh_write_timeout : opts_.write_timeout;
  }

  void arm_keep_alive() {
    if (opts_.keep_alive.count() <= 0) return;
    // derper adds up to 5 s of jitter; short test periods get proportionally short jitter.
    const auto max_jitter =
        std::min<std::chrono::milliseconds>(std::chrono::seconds(5), opts_.keep_alive);
    std::uniform_int_distribution<int64_t> dist(0, max_jitter.count() - 1);
    thread_local std::minstd_rand rng{std::random_device{}()};
    ka_timer_.expires_after(opts_.keep_alive + std::chrono::milliseconds(dist(rng)));
    ka_timer_.async_wait([self = self_ptr()](boost::system::error_code ec) {
      if (ec || self->closed_) return;
      self->queue_keep_alive();
      self->arm_keep_alive();
    });
  }

  // ---- Teardown (own loop).
  void close(const std::string& why) {
    if (closed_) return;
    closed_ = true;
    if (opts_.verbose && !why.empty()) log(fmt::format("{}: closed: {}", peer_name(), why));
    hs_timer_.cancel();
    write_timer_.cancel();
    ka_timer_.cancel();
    rate_timer_.cancel();
    boost::system::error_code ec;
    lowest().shutdown(asio::ip::tcp::socket::shutdown_both, ec);
    lowest().close(ec);
    shut_queues();
    note_closed_preferred();
    if (handshake_done_ && not_ideal_) stats_.add(Counter::kGaugeNotIdealConnections, -1);
    relay_.unregister_client(this);
  }

  static constexpr size_t kMinTail = 4 * 1024;
  static constexpr bool kWs = is_websocket_stream<Stream>;
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  static constexpr bool kWsOverTls = kWs && is_tls_next_layer<Stream>;
  static constexpr bool kRawReads = std::is_same_v<Stream, asio::ip::tcp::socket>;
  struct NoIdleBuf {};
  static constexpr size_t kIdleRead = 64;

  Stream stream_;
  std::shared_ptr<void> held_;
  bool port80_ = false;
  std::string https_host_;
  uint16_t https_port_ = 443;
  [[no_unique_address]] std::conditional_t<kRawReads, NoIdleBuf, std::array<uint8_t, kIdleRead>>
      idle_buf_;
  NodePublic server_public_;
  asio::steady_timer hs_timer_;
  asio::steady_timer write_timer_;
  asio::steady_timer ka_timer_;
  asio::steady_timer rate_timer_;  // receive token bucket wait, or a full queue's (queue_wait)

  // HTTP and handshake state, ~500 bytes: on the heap from accept until the DERP stream starts,
  // then released, so an established connection does not carry it (issue 8: idle memory).
  struct HandshakeState {
    beast::flat_buffer hbuf;
    std::optional<beast::http::request_parser<beast::http::string_body>> parser;
    Response res;
    std::string out;
  };
  std::unique_ptr<HandshakeState> hs_ = std::make_unique<HandshakeState>();
  Presence presence_scratch_;
  bool not_ideal_ = false;
  bool handshake_done_ = false;
  bool ws_open_ = false;     // the WebSocket upgrade was accepted: closes send a close frame
  bool ws_closing_ = false;  // our close frame is on its way; no more DERP reads or writes
  bool read_parked_ = false;  // the reader stopped for a stall= fault
  bool queue_parked_ = false;  // the reader waits for a full destination queue (queue_wait)
  uint64_t queue_park_gen_ = 0;

  // Reader (own loop).
  Chunk* rchunk_ = nullptr;
  size_t rbegin_ = 0;
  size_t rend_ = 0;

  // Writer (own loop).
  bool write_in_progress_ = false;
  bool write_timer_armed_ = false;
  std::chrono::steady_clock::time_point write_started_;
  bool closed_ = false;
};

}  // namespace derp::server
