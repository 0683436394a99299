#include "net/url.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace derp::net {
namespace {

Error bad(std::string_view text, std::string_view why) {
  return Error(ErrorKind::kUsage,
               "bad server URL \"" + std::string(text) + "\": " + std::string(why));
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool valid_host_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

}  // namespace

std::string DerpUrl::host_port() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

std::string DerpUrl::host_header() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != (tls ? 443 : 80)) h += ":" + std::to_string(port);
  return h;
}

std::string DerpUrl::to_string() const {
  return std::string(tls ? "https://" : "http://") + host_port() + target;
}

Result<DerpUrl> parse_derp_url(std::string_view text) {
  if (text.empty()) return bad(text, "empty");
  for (char c : text) {
    if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
      return bad(text, "contains white space or control characters");
  }
  DerpUrl url;
  size_t sep = text.find("://");
  if (sep == std::string_view::npos) return bad(text, "missing scheme (want http:// or https://)");
  std::string_view scheme = text.substr(0, sep);
  if (iequals(scheme, "http")) {
    url.tls = false;
  } else if (iequals(scheme, "https")) {
    url.tls = true;
  } else {
    return bad(text, "unsupported scheme \"" + std::string(scheme) + "\" (want http or https)");
  }
  std::string_view rest = text.substr(sep + 3);
  size_t path_at = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_at);
  std::string_view path = path_at == std::string_view::npos ? "" : rest.substr(path_at);
  if (path.find('#') != std::string_view::npos) return bad(text, "fragments are not allowed");
  if (authority.find('@') != std::string_view::npos) return bad(text, "user info is not allowed");
  if (authority.empty()) return bad(text, "missing host");

  std::string_view port_text;
  bool has_port = false;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad(text, "unterminated [ in IPv6 host");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad(text, "unexpected characters after ]");
      port_text = after.substr(1);
      has_port = true;
    }
    if (url.host.empty() ||
        url.host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string::npos)
      return bad(text, "bad IPv6 address");
  } else {
    size_t colon = authority.find(':');
    if (colon != std::string_view::npos && authority.find(':', colon + 1) != std::string_view::npos) {
      return bad(text, "an IPv6 address must be in brackets, as in http://[" +
                           std::string(authority) + "]/ or http://[::1]:PORT/");
    }
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
    }
    if (url.host.empty()) return bad(text, "missing host");
    if (!std::all_of(url.host.begin(), url.host.end(), valid_host_char))
      return bad(text, "bad character in host \"" + url.host + "\"");
  }
  if (has_port) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        value == 0 || value > 65535) {
      return bad(text, "bad port \"" + std::string(port_text) + "\" (want 1-65535)");
    }
    url.port = static_cast<uint16_t>(value);
    url.explicit_port = true;
  } else {
    url.port = url.tls ? 443 : 80;
  }
  if (path.empty()) {
    url.target = "/derp";
  } else if (path.front() == '?') {
    url.target = "/derp" + std::string(path);
  } else {
    url.target = std::string(path);
  }
  return url;
}

}  // namespace derp::net
