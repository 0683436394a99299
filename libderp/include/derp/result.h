// Errors as values: every fallible libderp call returns derp::Result<T>.
#pragma once

#include <cassert>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>

namespace derp {

// Which layer a failure belongs to. Tools map each kind to one exit code (docs/CLI.md), and
// --json reports it as error.layer. Keep this list and tools/common/exit_codes.h in step.
enum class ErrorKind {
  kUsage,      // bad argument, flag, key text or configuration
  kDns,        // name did not resolve
  kConnect,    // TCP connect refused / unreachable
  kTls,        // TLS handshake or certificate verification
  kHttp,       // HTTP status or upgrade refused, malformed HTTP
  kProtocol,   // DERP handshake or framing violation (bad magic, wrong key, bad box, oversize)
  kTimeout,    // a deadline passed
  kIo,         // an established connection failed (reset, EOF)
  kClosed,     // the object was closed by its owner (Go's ErrClientClosed)
  kInternal,   // a bug or resource exhaustion
};

// Stable lower-case name of a kind, as used in --json ("usage", "dns", "connect", ...).
const char* error_kind_name(ErrorKind kind);

struct Error {
  ErrorKind kind = ErrorKind::kInternal;
  std::string message;    // one line: what failed and where
  std::error_code cause;  // the system/Asio error behind it, if any
  // Structured detail for tools and --json; empty/0 when the failure has none.
  int http_status = 0;     // kHttp: the status the server answered instead of 101
  std::string tls_reason;  // kTls: why verification failed ("certificate has expired", ...)
  std::string hint;        // what the caller might try, when the library knows better

  Error() = default;
  Error(ErrorKind k, std::string msg, std::error_code ec = {})
      : kind(k), message(std::move(msg)), cause(ec) {}

  // Returns a copy whose message is "<context>: <message>".
  Error wrap(std::string_view context) const {
    Error e = *this;
    e.message = std::string(context) + ": " + message;
    return e;
  }
};

// Value or Error. Deliberately small: ok(), value(), error(), operator bool/*/->.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { assert(!ok()); return std::get<1>(v_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { assert(!ok_); return err_; }
  Error&& error() && { assert(!ok_); return std::move(err_); }

 private:
  Error err_;
  bool ok_ = true;
};

}  // namespace derp
