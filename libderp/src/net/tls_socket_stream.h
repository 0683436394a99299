// A TLS stream in which OpenSSL reads and writes the TCP socket itself (a socket BIO); Asio
// only waits for readiness. Asio's ssl::stream (under Beast's ssl_stream) instead keeps two
// 17 KiB staging vectors per stream and joins OpenSSL to the socket through a BIO pair with two
// more 17 KiB buffers that are never released: ~68 KB per connection, idle or not, and two extra
// copies of every byte. Here an idle connection holds only OpenSSL's SSL object (its record
// buffers are released while empty: SSL_MODE_RELEASE_BUFFERS on the context, as the relay's
// tls_certs.cc and derp-bench set it).
//
// The relay's TLS connections (server/connection.h) and derp-bench's TLS client use it. One
// event loop per stream: async_handshake (client or server), async_read_some, async_write_some
// (an AsyncStream for Asio's and Beast's composed operations), next_layer() for the socket,
// native_handle() for SNI, verification settings and SSL_has_pending. The socket may be
// connected after construction: the BIO is attached at the handshake. A read completion
// carries every record that has arrived (read-ahead), and a gathered write is coalesced into
// full TLS records through a per-thread staging buffer, so that many small frames become one
// record rather than one record each.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <boost/asio/compose.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/beast/core/role.hpp>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

namespace derp::net {

// The socket BIO OpenSSL reads and writes through: BIO_s_socket's behaviour, except that writes
// use send(MSG_NOSIGNAL), so a peer that went away gives EPIPE instead of killing the process
// with SIGPIPE (Asio's own sockets do the same). Defined in tls_socket_stream.cc.
BIO* new_nosignal_socket_bio(int fd);

class TlsSocketStream {
 public:
  using socket_type = boost::asio::ip::tcp::socket;
  using executor_type = socket_type::executor_type;
  using next_layer_type = socket_type;
  using error_code = boost::system::error_code;

  // Largest plaintext of one TLS record.
  static constexpr size_t kRecord = 16384;
  // One async_write_some writes at most this much (several records) before completing.
  static constexpr size_t kMaxWriteSome = 256 * 1024;

  TlsSocketStream(socket_type socket, boost::asio::ssl::context& ctx)
      : socket_(std::move(socket)), ssl_(SSL_new(ctx.native_handle())) {
    if (ssl_ != nullptr) {
      // Read as much as the socket has into OpenSSL's record buffer (released again once
      // empty), rather than a 5-byte header and then the record body: one recv for several
      // records instead of two per record.
      SSL_set_read_ahead(ssl_, 1);
      // A write retried after WANT_WRITE passes the same bytes (re-coalesced from the caller's
      // buffers at the same offset), possibly from another address.
      SSL_set_mode(ssl_, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    }
  }
  // A stream whose socket is opened and connected later (a client), on `io`.
  TlsSocketStream(boost::asio::io_context& io, boost::asio::ssl::context& ctx)
      : TlsSocketStream(socket_type(io), ctx) {}
  ~TlsSocketStream() {
    if (ssl_ != nullptr) SSL_free(ssl_);
  }
  TlsSocketStream(TlsSocketStream&& o) noexcept
      : socket_(std::move(o.socket_)), ssl_(std::exchange(o.ssl_, nullptr)) {}
  TlsSocketStream& operator=(TlsSocketStream&&) = delete;
  TlsSocketStream(const TlsSocketStream&) = delete;
  TlsSocketStream& operator=(const TlsSocketStream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  socket_type& next_layer() { return socket_; }
  SSL* native_handle() { return ssl_; }

  // The handshake as a client or a server, on the (connected) socket.
  template <class Handler>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Handler&& handler) {
    if (ssl_ != nullptr && !attach(type)) {
      SSL_free(ssl_);
      ssl_ = nullptr;  // the handshake fails with no_memory
    }
    return boost::asio::async_compose<Handler, void(error_code)>(
        HandshakeOp{*this}, handler, socket_);
  }

  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return boost::asio::async_compose<Handler, void(error_code, size_t)>(
        ReadOp<MutableBuffers>{*this, buffers}, handler, socket_);
  }

  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return boost::asio::async_compose<Handler, void(error_code, size_t)>(
        WriteOp<ConstBuffers>{*this, buffers}, handler, socket_);
  }

  // Sends close_notify if it fits in the socket now (never waits), then closes the socket.
  void shutdown_and_close(error_code& ec) {
    if (ssl_ != nullptr && SSL_is_init_finished(ssl_)) {
      ERR_clear_error();
      SSL_shutdown(ssl_);
      ERR_clear_error();
    }
    socket_.shutdown(socket_type::shutdown_both, ec);
    socket_.close(ec);
  }

 private:
  // Joins the SSL to the socket (non-blocking) for the handshake's role; false when no BIO.
  bool attach(boost::asio::ssl::stream_base::handshake_type type) {
    if (SSL_get_rbio(ssl_) == nullptr) {
      BIO* bio = new_nosignal_socket_bio(static_cast<int>(socket_.native_handle()));
      if (bio == nullptr) return false;
      SSL_set_bio(ssl_, bio, bio);  // the SSL owns it (one reference for both directions)
      error_code ec;
      socket_.non_blocking(true, ec);
    }
    if (type == boost::asio::ssl::stream_base::client) {
      SSL_set_connect_state(ssl_);
    } else {
      SSL_set_accept_state(ssl_);
    }
    return true;
  }

  // What one SSL_* call that did not succeed means for the operation.
  enum class Next { kWaitRead, kWaitWrite, kFail };
  Next classify(int ret, error_code& ec) {
    const int err = SSL_get_error(ssl_, ret);
    switch (err) {
      case SSL_ERROR_WANT_READ:
        return Next::kWaitRead;
      case SSL_ERROR_WANT_WRITE:
        return Next::kWaitWrite;
      case SSL_ERROR_ZERO_RETURN:  // close_notify: the peer closed cleanly
        ec = boost::asio::error::eof;
        return Next::kFail;
      case SSL_ERROR_SYSCALL: {
        const unsigned long e = ERR_get_error();
        if (e != 0) {
          ec = error_code(static_cast<int>(e), boost::asio::error::get_ssl_category());
        } else if (errno != 0 && errno != EAGAIN) {
          ec = error_code(errno, boost::system::system_category());
        } else {
          ec = boost::asio::error::eof;  // the socket closed without close_notify
        }
        return Next::kFail;
      }
      default: {
        const unsigned long e = ERR_get_error();
        if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
          ec = boost::asio::error::eof;  // OpenSSL 3's word for the same
        } else if (e != 0) {
          ec = error_code(static_cast<int>(e), boost::asio::error::get_ssl_category());
        } else {
          ec = boost::asio::error::fault;
        }
        return Next::kFail;
      }
    }
  }

  // Starts the wait a WANT_READ / WANT_WRITE asks for; the op resumes with the wait's result.
  template <class Self>
  void wait(Next next, Self& self) {
    socket_.async_wait(next == Next::kWaitRead ? socket_type::wait_read : socket_type::wait_write,
                       std::move(self));
  }

  // An Asio composed operation must not call its handler from inside the initiating function:
  // a result known at once is delivered through a post to the stream's executor.
  template <class Self, class... Args>
  void finish(Self& self, bool waited, Args... args) {
    if (waited) return self.complete(args...);
    boost::asio::post(socket_.get_executor(),
                      [self = std::move(self), args...]() mutable { self.complete(args...); });
  }

  struct HandshakeOp {
    TlsSocketStream& s;
    bool waited = false;
    template <class Self>
    void operator()(Self& self, error_code ec = {}) {
      if (s.ssl_ == nullptr) return s.finish(self, waited, error_code(boost::asio::error::no_memory));
      if (ec) return s.finish(self, waited, ec);
      ERR_clear_error();
      errno = 0;
      const int r = SSL_do_handshake(s.ssl_);
      if (r == 1) return s.finish(self, waited, error_code{});
      const Next next = s.classify(r, ec);
      if (next == Next::kFail) return s.finish(self, waited, ec);
      waited = true;
      s.wait(next, self);
    }
  };

  template <class MutableBuffers>
  struct ReadOp {
    TlsSocketStream& s;
    MutableBuffers buffers;
    bool waited = false;
    template <class Self>
    void operator()(Self& self, error_code ec = {}) {
      if (ec) return s.finish(self, waited, ec, size_t{0});
      // Into the first non-empty buffer, as a socket's read_some does.
      boost::asio::mutable_buffer b;
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        b = *it;
        if (b.size() > 0) break;
      }
      if (b.size() == 0) return s.finish(self, waited, error_code{}, size_t{0});
      // One SSL_read_ex returns one record's plaintext; keep going while records are there
      // (read-ahead pulls several from the socket per recv), so that one completion carries
      // many frames as a plain socket's read does. A failure after some bytes is left for the
      // next read to report: OpenSSL returns it again.
      size_t got = 0;
      for (;;) {
        ERR_clear_error();
        errno = 0;
        size_t n = 0;
        const int r = SSL_read_ex(s.ssl_, static_cast<uint8_t*>(b.data()) + got, b.size() - got, &n);
        if (r == 1) {
          got += n;
          if (got == b.size()) break;
          continue;
        }
        if (got > 0) break;
        const Next next = s.classify(r, ec);
        if (next == Next::kFail) return s.finish(self, waited, ec, size_t{0});
        waited = true;
        return s.wait(next, self);
      }
      s.finish(self, waited, error_code{}, got);
    }
  };

  template <class ConstBuffers>
  struct WriteOp {
    TlsSocketStream& s;
    ConstBuffers buffers;
    size_t done = 0;  // bytes of `buffers` written by this operation
    bool waited = false;

    // The next record's plaintext, starting `done` bytes into the buffers: the caller's own
    // bytes when one buffer holds a whole record, else up to kRecord bytes gathered into the
    // thread's staging buffer. The same offset always yields the same bytes and length, which
    // is what OpenSSL needs when a write is retried after WANT_WRITE.
    boost::asio::const_buffer next_record() {
      static thread_local std::array<uint8_t, kRecord> staging;
      size_t skip = done;
      size_t filled = 0;
      for (auto it = boost::asio::buffer_sequence_begin(buffers);
           it != boost::asio::buffer_sequence_end(buffers); ++it) {
        boost::asio::const_buffer b = *it;
        if (skip >= b.size()) {
          skip -= b.size();
          continue;
        }
        b += skip;
        skip = 0;
        if (filled == 0 && b.size() >= kRecord) return {b.data(), kRecord};
        const size_t take = std::min(b.size(), kRecord - filled);
        std::memcpy(staging.data() + filled, b.data(), take);
        filled += take;
        if (filled == kRecord) break;
      }
      return {staging.data(), filled};
    }

    template <class Self>
    void operator()(Self& self, error_code ec = {}) {
      if (ec) return s.finish(self, waited, ec, done);
      while (done < kMaxWriteSome) {
        const boost::asio::const_buffer rec = next_record();
        if (rec.size() == 0) break;  // everything written
        ERR_clear_error();
        errno = 0;
        size_t n = 0;
        const int r = SSL_write_ex(s.ssl_, rec.data(), rec.size(), &n);
        if (r == 1) {
          done += n;
          continue;
        }
        const Next next = s.classify(r, ec);
        if (next == Next::kFail) return s.finish(self, waited, ec, done);
        // Report what is written; the caller's next write_some starts at that offset and
        // re-creates exactly the pending record.
        if (done > 0) return s.finish(self, waited, error_code{}, done);
        waited = true;
        return s.wait(next, self);
      }
      s.finish(self, waited, error_code{}, done);
    }
  };

  socket_type socket_;
  SSL* ssl_ = nullptr;
};

// Beast's WebSocket closing handshake ends with a teardown of the next layer: close_notify
// when it fits, then the socket closes.
inline void teardown(boost::beast::role_type, TlsSocketStream& stream,
                     boost::system::error_code& ec) {
  stream.shutdown_and_close(ec);
}

template <class Handler>
void async_teardown(boost::beast::role_type, TlsSocketStream& stream, Handler&& handler) {
  boost::system::error_code ec;
  stream.shutdown_and_close(ec);
  boost::asio::post(stream.get_executor(),
                    [h = std::forward<Handler>(handler), ec]() mutable { std::move(h)(ec); });
}

}  // namespace derp::net
