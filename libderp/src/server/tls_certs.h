// The relay's TLS certificate, derper's --certmode=manual (PROTOCOL.md §6.3): DIR/HOST.crt and
// DIR/HOST.key, or a self-signed P-256 certificate generated (and saved there) when HOST is an
// IP address and the files are missing. Reloads without touching established connections: each
// new connection takes the context current at accept time.
// Included only by server.cc.
#pragma once

#include <sys/types.h>

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "derp/result.h"

namespace derp::server {

class TlsCerts {
 public:
  using Log = std::function<void(std::string_view)>;

  // Loads (or, for an IP hostname without files, generates) the certificate; checks that it
  // is valid for hostname, as derper does. kUsage for a missing dir/hostname, kTls otherwise.
  // `server_key_hex` (64 hex) goes into derper's meta certificate, appended to every chain
  // served so TLS 1.3 clients learn the relay's key and use fast start (PROTOCOL.md §6.3).
  static Result<std::unique_ptr<TlsCerts>> load(std::string dir, std::string hostname,
                                                std::string server_key_hex, Log log);

  // The context for a new connection. Thread-safe.
  std::shared_ptr<boost::asio::ssl::context> current() const;

  // Reads the files again and switches to them; on failure keeps the old certificate.
  Result<void> reload();
  // reload() when either file's mtime, size or inode changed since the last load; checks the
  // files at most once per `min_interval`. Thread-safe; called at accept time.
  void reload_if_changed(std::chrono::steady_clock::duration min_interval);

  // "sha256-raw:<64 hex>" of the current leaf certificate's DER (a DERP map CertName).
  std::string pin() const;
  // The current leaf certificate's notAfter, Unix seconds.
  int64_t not_after() const;
  bool generated() const { return generated_; }
  const std::string& cert_path() const { return crt_path_; }

 private:
  struct FileStamp {
    bool ok = false;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };
  static FileStamp stamp(const std::string& path);
  Result<void> load_files();

  std::string hostname_;
  std::string crt_path_;
  std::string key_path_;
  std::string server_key_hex_;
  Log log_;
  bool generated_ = false;

  mutable std::mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
  std::string pin_;
  int64_t not_after_ = 0;
  FileStamp crt_stamp_, key_stamp_;
  std::chrono::steady_clock::time_point last_check_{};
};

}  // namespace derp::server
