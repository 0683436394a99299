#include "common/client_setup.h"

#include "common/json_output.h"

namespace derp::tools {

Result<std::unique_ptr<Client>> make_client(const ToolCli& cli, const NodePrivate& key) {
  ClientOptions o;
  o.private_key = key;
  o.server_url = cli.server();
  o.server_key = cli.server_key();
  if (cli.timeout().count() > 0) o.connect_timeout = cli.timeout();
  return Client::create(std::move(o));
}

std::string payload_for_humans(std::span<const uint8_t> data) {
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  if (is_printable_utf8(text)) return std::string(text);
  return "hex:" + to_hex(data.data(), data.size());
}

}  // namespace derp::tools
