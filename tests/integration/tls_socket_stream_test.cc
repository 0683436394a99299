// The TLS stream of the relay and derp-bench (net/tls_socket_stream.h) over a real loopback TCP connection, with
// Asio's ssl::stream as the client: one read completion carries every record that has arrived
// (read-ahead plus a loop over SSL_read_ex), and the end of the stream still comes through after
// data that arrived with it.
#include <gtest/gtest.h>
#include <sys/ioctl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>

#include "net/tls_socket_stream.h"
#include "support/test_ca.h"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using derp::net::TlsSocketStream;

// A TLS 1.3 record of `plaintext` bytes on the wire: 5-byte header, content type, 16-byte tag.
constexpr int kTlsStreamRecordBytes(int plaintext) { return plaintext + 5 + 1 + 16; }

// A server TLS context as the relay builds it (release-buffers mode) with a test leaf.
std::unique_ptr<asio::ssl::context> tls_stream_server_context() {
  const derp::test::TestCa ca = derp::test::make_test_ca();
  const derp::test::TestCert leaf = derp::test::make_cert_signed_by(ca, {});
  auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX_set_mode(ctx->native_handle(), SSL_MODE_RELEASE_BUFFERS);
  ctx->use_certificate_chain(asio::buffer(leaf.cert_pem));
  ctx->use_private_key(asio::buffer(leaf.key_pem), asio::ssl::context::pem);
  return ctx;
}

// One accepted connection: the server stream on `io` and a blocking client in its own thread,
// which runs `client` once both ends finished the handshake (so no application data can ride
// in with it) and then reports through `client_done`.
struct TlsStreamPair {
  asio::io_context io;
  std::unique_ptr<asio::ssl::context> server_ctx = tls_stream_server_context();
  asio::ssl::context client_ctx{asio::ssl::context::tls_client};
  std::unique_ptr<TlsSocketStream> server;
  std::thread client_thread;
  std::promise<void> client_done;
  std::promise<void> go;
  // The client keeps its socket until the test ends: closing it with the server's unread
  // session tickets in its buffer would reset the connection and lose what it sent.
  std::promise<void> release;

  template <class ClientFn>
  void start(ClientFn client) {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const uint16_t port = acceptor.local_endpoint().port();
    std::shared_future<void> go_future = go.get_future().share();
    std::shared_future<void> release_future = release.get_future().share();
    client_thread = std::thread([this, port, client, go_future, release_future] {
      asio::io_context cio;
      asio::ssl::stream<tcp::socket> c(cio, client_ctx);
      c.set_verify_mode(asio::ssl::verify_none);
      c.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
      c.next_layer().set_option(tcp::no_delay(true));  // each record leaves at once
      c.handshake(asio::ssl::stream_base::client);
      go_future.wait();
      client(c);
      client_done.set_value();
      release_future.wait();
    });
    tcp::socket s(io);
    acceptor.accept(s);
    server = std::make_unique<TlsSocketStream>(std::move(s), *server_ctx);
    boost::system::error_code hs_ec = asio::error::would_block;
    server->async_handshake(asio::ssl::stream_base::server,
                            [&](boost::system::error_code ec) { hs_ec = ec; });
    io.run();
    io.restart();
    go.set_value();
    ASSERT_FALSE(hs_ec) << hs_ec.message();
  }

  // Waits (bounded) until the server's socket holds at least `bytes` unread bytes.
  ::testing::AssertionResult socket_holds(int bytes) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int avail = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (::ioctl(server->next_layer().native_handle(), FIONREAD, &avail) == 0 && avail >= bytes) {
        return ::testing::AssertionSuccess();
      }
      std::this_thread::yield();
    }
    return ::testing::AssertionFailure() << avail << " of " << bytes << " bytes arrived";
  }

  // One async_read_some into `buf`, run to completion.
  std::pair<boost::system::error_code, size_t> read_once(std::string& buf) {
    std::pair<boost::system::error_code, size_t> out{asio::error::would_block, 0};
    server->async_read_some(asio::buffer(buf), [&](boost::system::error_code ec, size_t n) {
      out = {ec, n};
    });
    io.run();
    io.restart();
    return out;
  }

  ~TlsStreamPair() {
    // A test that stopped early must not leave the client waiting for its turn or its peer.
    for (auto* pr : {&go, &release}) {
      try {
        pr->set_value();
      } catch (const std::future_error&) {
      }
    }
    if (server) {
      boost::system::error_code ec;
      server->next_layer().close(ec);
    }
    if (client_thread.joinable()) client_thread.join();
  }
};

TEST(TlsSocketStream, OneReadCarriesEveryRecordThatArrived) {
  TlsStreamPair p;
  // Ten writes of 100 bytes: ten TLS records, all sent before the server reads.
  p.start([](asio::ssl::stream<tcp::socket>& c) {
    for (int i = 0; i < 10; ++i) {
      const std::string rec(100, static_cast<char>('a' + i));
      asio::write(c, asio::buffer(rec));
    }
  });
  p.client_done.get_future().wait();
  ASSERT_TRUE(p.socket_holds(10 * kTlsStreamRecordBytes(100)));
  std::string buf(64 * 1024, '\0');
  auto [ec, n] = p.read_once(buf);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(n, 1000u);  // one record per completion would give 100
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(buf.substr(i * 100, 100), std::string(100, static_cast<char>('a' + i))) << i;
  }
}

TEST(TlsSocketStream, ReadStopsAtTheBufferAndKeepsTheRest) {
  TlsStreamPair p;
  p.start([](asio::ssl::stream<tcp::socket>& c) {
    for (int i = 0; i < 4; ++i) asio::write(c, asio::buffer(std::string(100, 'x')));
  });
  p.client_done.get_future().wait();
  ASSERT_TRUE(p.socket_holds(4 * kTlsStreamRecordBytes(100)));
  std::string small(150, '\0');
  auto [ec, n] = p.read_once(small);
  ASSERT_FALSE(ec) << ec.message();
  EXPECT_EQ(n, 150u);
  // The rest is still there, decrypted or not yet: SSL_has_pending says so.
  EXPECT_EQ(SSL_has_pending(p.server->native_handle()), 1);
  std::string big(4096, '\0');
  auto [ec2, n2] = p.read_once(big);
  ASSERT_FALSE(ec2) << ec2.message();
  EXPECT_EQ(n2, 250u);
}

TEST(TlsSocketStream, CloseNotifyAfterDataGivesTheDataThenEof) {
  TlsStreamPair p;
  p.start([](asio::ssl::stream<tcp::socket>& c) {
    for (int i = 0; i < 3; ++i) asio::write(c, asio::buffer(std::string(100, 'y')));
    boost::system::error_code ec;
    c.shutdown(ec);  // close_notify (waits for the peer's: the server never sends one)
  });
  std::string buf(64 * 1024, '\0');
  size_t total = 0;
  boost::system::error_code ec;
  while (!ec) {  // the records may arrive over several reads, but end with eof
    auto [e, n] = p.read_once(buf);
    ec = e;
    total += n;
  }
  EXPECT_EQ(ec, asio::error::eof) << ec.message();
  EXPECT_EQ(total, 300u);
}

}  // namespace
