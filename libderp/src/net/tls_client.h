// The TLS layer of a DERP client dial (PROTOCOL.md §6.3, §13): OpenSSL through asio::ssl over
// an already connected TCP socket. Certificate checks happen here so the upgrade and the DERP
// framing above see only a ClientStream.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <optional>
#include <string>

#include "derp/key.h"
#include "derp/result.h"
#include "derp/tls_info.h"
#include "net/client_stream.h"
#include "net/dial_deadline.h"

struct ssl_st;  // OpenSSL's SSL

namespace derp::net {

struct TlsClientConfig {
  std::string ca_file;    // extra trusted roots (PEM), added to the system store
  bool insecure = false;  // no verification at all (tests, --insecure)
  // Name the certificate must be valid for instead of the dialed host, or "sha256-raw:<hex>":
  // pin the SHA-256 of the leaf's DER (chain trust not required; validity period checked).
  std::string cert_name;
};

class TlsClientContext;  // the SSL_CTX: built once per client, shared by its dials

// TLS ≥ 1.2, no ALPN, system roots plus ca_file. kUsage when the CA file cannot be loaded or
// the sha256-raw pin is not 64 hex digits.
Result<std::shared_ptr<TlsClientContext>> make_tls_client_context(const TlsClientConfig& config);

struct TlsClientSession {
  std::unique_ptr<ClientStream> stream;
  TlsInfo info;
  // The relay's key from a derpkey meta certificate (TLS 1.3 only): enables fast start.
  std::optional<NodePublic> meta_server_key;
};

// Runs the client handshake on `socket` (connected to `host`; SNI = host unless it is an IP
// literal) and verifies the peer. Failures are kTls "TLS handshake with <where>: <why>";
// deadline expiry is kTimeout.
boost::asio::awaitable<Result<TlsClientSession>> tls_client_handshake(
    std::shared_ptr<TlsClientContext> ctx, boost::asio::ip::tcp::socket socket,
    const std::string& host, const std::string& where, DialDeadline& deadline);

// The sha256-raw pin check (§6.3) after a handshake that skipped chain verification: exactly
// one certificate besides a derpkey meta certificate, whose DER hashes to `pin_hex` (lower-case),
// within its validity period and, when `host` is not empty, valid for it (IP SAN for an IP
// literal). nullopt = accepted, else why not. For other TLS clients of the tools (derp-bench).
std::optional<std::string> check_certificate_pin(ssl_st* ssl, const std::string& pin_hex,
                                                 const std::string& host);

// True for "127.0.0.1", "::1" (no brackets): such hosts get no SNI and an IP SAN check.
bool is_ip_literal(const std::string& host);

}  // namespace derp::net
