#include "common/exit_codes.h"

namespace derp::tools {

int exit_code_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kUsage:
      return kExitUsage;
    case ErrorKind::kDns:
      return kExitDns;
    case ErrorKind::kConnect:
      return kExitConnect;
    case ErrorKind::kTls:
      return kExitTls;
    case ErrorKind::kHttp:
      return kExitHttp;
    case ErrorKind::kProtocol:
      return kExitProtocol;
    case ErrorKind::kTimeout:
      return kExitTimeout;
    case ErrorKind::kIo:
      return kExitIo;
    // A client closed under us is the tool's own doing (signal, shutdown): not a network fault.
    case ErrorKind::kClosed:
      return kExitIo;
    case ErrorKind::kInternal:
      return kExitInternal;
  }
  return kExitInternal;
}

std::vector<ExitCodeDoc> exit_code_docs() {
  std::vector<ExitCodeDoc> rows = {
      {kExitOk, {}, "success"},
      {kExitCheckFailed, {kCheckLayer},
       "the tool ran, but what it checked failed: lost pings, a violated --assert"},
      {kExitUsage, {}, "bad flag, argument, key, key file, --assert expression or configuration"},
      {kExitDns, {}, "the relay's name did not resolve"},
      {kExitConnect, {}, "TCP connect failed (refused, unreachable); for derp-serve: cannot listen"},
      {kExitTls, {},
       "TLS handshake or certificate verification failed; for derp-serve: no certificate "
       "files for a DNS --hostname"},
      {kExitHttp, {},
       "the relay answered with an HTTP error, refused the upgrade, or spoke malformed HTTP"},
      {kExitProtocol, {},
       "DERP handshake or framing violation: bad magic, server-key mismatch, undecryptable box"},
      {kExitTimeout, {}, "a deadline passed (connect, upgrade response, pong, packet)"},
      {kExitIo, {}, "an established connection broke (closed: the client was closed under the tool)"},
      {kExitInternal, {}, "a bug or resource exhaustion"},
  };
  for (int k = static_cast<int>(ErrorKind::kUsage); k <= static_cast<int>(ErrorKind::kInternal);
       ++k) {
    const auto kind = static_cast<ErrorKind>(k);
    for (auto& row : rows) {
      if (row.code == exit_code_for(kind)) row.layers.emplace_back(error_kind_name(kind));
    }
  }
  return rows;
}

namespace {

bool contains(const std::string& s, std::string_view what) {
  return s.find(what) != std::string::npos;
}

std::string http_hint(int status) {
  if (status == 404) return "no DERP at this path: check the URL (a relay serves /derp)";
  // derper answers 426 to a request that arrived without Upgrade: DERP; a 2xx/3xx means whatever
  // answered never saw the upgrade. Either way a proxy in between dropped the header.
  if (status == 426 || (status >= 200 && status < 400)) {
    return "the server answered without switching protocols: a proxy stripped Upgrade: DERP: "
           "try --websocket";
  }
  if (status == 403) return "the relay refused this client (is it restricted to known nodes?)";
  if (status == 502 || status == 503 || status == 504) {
    return "a proxy or load balancer could not reach the relay";
  }
  return "";
}

std::string tls_hint(const Error& e, bool via_derp_map) {
  const std::string& r = e.tls_reason;
  if (contains(r, "expired"))
    return "the relay's certificate has expired: renew it (or check the clock)";
  if (contains(r, "not yet valid"))
    return "the relay's certificate is not valid yet: check the clock";
  if (contains(r, "self-signed") || contains(r, "self signed") ||
      contains(r, "unable to get local issuer")) {
    if (via_derp_map) {
      return "the node's certificate is not from a trusted CA: pass --ca-file with its CA, or "
             "pin it with the node's CertName (sha256-raw:HEX) in the DERP map";
    }
    return "the certificate is not from a trusted CA: pass --ca-file with its CA, or pin it "
           "with --cert-name sha256-raw:HEX";
  }
  // A sha256-raw: pin that does not match (libderp's reason "certificate sha256 mismatch
  // (expected HEX, got HEX)"): the name is not the problem; say what the relay's pin is.
  if (contains(r, "sha256 mismatch")) {
    const auto got = r.find("got ");
    const std::string actual =
        got == std::string::npos ? "" : r.substr(got + 4, r.find(')', got) - got - 4);
    return "the certificate does not match the sha256-raw: pin" +
           (actual.empty() ? std::string() : "; the relay's pin is sha256-raw:" + actual);
  }
  if (contains(r, "mismatch") || contains(r, "not valid for")) {
    if (via_derp_map) {
      return "the certificate is for another name: check the node's HostName and CertName in "
             "the DERP map";
    }
    return "the certificate is for another name: check the URL's host, or name the expected "
           "one with --cert-name";
  }
  if (contains(e.message, "is it speaking TLS"))
    return "if the relay serves plain HTTP, use http://";
  if (contains(e.message, "wrong version number") ||
      contains(e.message, "packet length too long")) {
    return "the server does not speak TLS here: if it serves plain HTTP, use http://";
  }
  return "";
}

}  // namespace

std::string failure_hint(const Error& error, bool via_derp_map) {
  if (!error.hint.empty()) return error.hint;
  switch (error.kind) {
    case ErrorKind::kHttp:
      return http_hint(error.http_status);
    case ErrorKind::kTls:
      return tls_hint(error, via_derp_map);
    case ErrorKind::kProtocol:
      if (contains(error.message, "is not the expected") ||
          contains(error.message, "server key mismatch")) {
        return "the relay's key differs from --server-key: check the pin (derp-serve prints "
               "its key)";
      }
      return "";
    default:
      return "";
  }
}

}  // namespace derp::tools
