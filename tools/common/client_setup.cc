#include "common/client_setup.h"

#include "common/json_output.h"

namespace derp::tools {

Result<ToolClient> make_client(const ToolCli& cli, bool connect) {
  ToolClient out;
  auto key = cli.load_key(&out.ephemeral);
  if (!key) return std::move(key).error();
  out.key = *key;
  ClientOptions o;
  o.private_key = out.key;
  o.server_url = cli.server();
  o.server_key = cli.server_key();
  o.ca_file = cli.ca_file();
  o.insecure = cli.insecure();
  o.cert_name = cli.cert_name();
  if (cli.timeout().count() > 0) o.connect_timeout = cli.timeout();
  auto client = Client::create(std::move(o));
  if (!client) return std::move(client).error();
  out.client = std::move(*client);
  if (connect) {
    if (auto ok = out.client->connect(); !ok) return std::move(ok).error();
  }
  return out;
}

std::string payload_for_humans(std::span<const uint8_t> data) {
  std::string_view text(reinterpret_cast<const char*>(data.data()), data.size());
  if (is_printable_utf8(text)) return std::string(text);
  return "hex:" + to_hex(data.data(), data.size());
}

}  // namespace derp::tools
