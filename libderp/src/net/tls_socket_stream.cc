#include "net/tls_socket_stream.h"

#include <sys/socket.h>

#include <cstdint>

namespace derp::net {
namespace {

int fd_of(BIO* b) { return static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b))); }

bool retryable(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

int bio_write(BIO* b, const char* data, int len) {
  BIO_clear_retry_flags(b);
  const ssize_t n = ::send(fd_of(b), data, static_cast<size_t>(len), MSG_NOSIGNAL);
  if (n < 0 && retryable(errno)) BIO_set_retry_write(b);
  return static_cast<int>(n);
}

int bio_read(BIO* b, char* data, int len) {
  BIO_clear_retry_flags(b);
  const ssize_t n = ::recv(fd_of(b), data, static_cast<size_t>(len), 0);
  if (n < 0 && retryable(errno)) BIO_set_retry_read(b);
  return static_cast<int>(n);
}

int bio_puts(BIO* b, const char* str) { return bio_write(b, str, static_cast<int>(std::strlen(str))); }

long bio_ctrl(BIO*, int cmd, long, void*) {
  // Nothing is buffered here: a flush is always complete. Everything else is unsupported.
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

// The BIO does not own the socket: the stream's tcp::socket closes it.
int bio_destroy(BIO*) { return 1; }

BIO_METHOD* nosignal_method() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "derp socket (MSG_NOSIGNAL)");
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_puts(m, bio_puts);
    BIO_meth_set_ctrl(m, bio_ctrl);
    BIO_meth_set_create(m, bio_create);
    BIO_meth_set_destroy(m, bio_destroy);
    return m;
  }();
  return method;
}

}  // namespace

BIO* new_nosignal_socket_bio(int fd) {
  BIO* b = BIO_new(nosignal_method());
  if (b != nullptr) BIO_set_data(b, reinterpret_cast<void*>(static_cast<intptr_t>(fd)));
  return b;
}

}  // namespace derp::net
