// Loading a DERP map from a file or an http(s):// URL. PROTOCOL.md §8.
#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "derp/derp_map_lint.h"
#include "probe/http_get.h"

namespace derp::probe {

Result<DERPMap> load_derp_map(const std::string& source, std::chrono::milliseconds timeout,
                              const std::string& ca_file) {
  std::string text;
  if (source.rfind("http://", 0) == 0 || source.rfind("https://", 0) == 0) {
    HttpGet req;
    req.url = source;
    req.timeout = timeout;
    req.ca_file = ca_file;
    auto resp = http_get(req);
    if (!resp) return std::move(resp).error().wrap("DERP map");
    if (resp->status != 200) {
      return Error(ErrorKind::kHttp,
                   fmt::format("DERP map: GET {}: HTTP status {}", source, resp->status));
    }
    text = std::move(resp->body);
  } else {
    std::ifstream in(source, std::ios::binary);
    if (!in) return Error(ErrorKind::kIo, fmt::format("DERP map: cannot read {}", source));
    std::ostringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto map = parse_derp_map(text);
  if (!map) return std::move(map).error().wrap(source);
  return map;
}

}  // namespace derp::probe
