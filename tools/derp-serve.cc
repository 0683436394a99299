// derp-serve: run a DERP relay on plain HTTP, with derper's STUN server (derper --dev).
#include <fmt/format.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/exit_codes.h"
#include "derp/key.h"
#include "derp/server.h"

int main(int argc, char** argv) {
  using namespace derp;
  tools::ToolCli cli("derp-serve", "Run a DERP relay (plain HTTP; TLS comes later).");
  std::string addr = "127.0.0.1:3340";
  std::string key_file = "derper.key";
  std::string mesh_file;
  std::vector<std::string> mesh_with;
  int threads = 0;
  bool verbose = false;
  bool stun = true;  // derper's default
  int stun_port = 3478;
  std::string metrics_addr;
  auto& app = cli.app();
  app.add_option("-a,--addr", addr, "Listen address host:port (port 0 = any free port)")
      ->capture_default_str();
  app.add_option("-c,--config", key_file,
                 "Relay key file, derper's JSON format; created (mode 0600) if missing. "
                 "Default: derper.key in the current directory")
      ->capture_default_str();
  app.add_option("--mesh-psk-file", mesh_file, "File holding the 64-hex mesh key");
  app.add_option("--mesh-with", mesh_with,
                 "Relays to mesh with, comma-separated (derper's --mesh-with): host:port, "
                 "host/dialhost, or http(s):// URLs; this relay's own address is skipped. "
                 "Needs --mesh-psk-file")
      ->delimiter(',');
  app.add_option("--threads", threads, "Event loops (0 = one per core)")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("-v,--verbose", verbose, "Log every connection");
  app.add_flag("--stun", stun, "Run the STUN server (UDP, same host as --addr); --stun=false: off")
      ->capture_default_str();
  app.add_option("--stun-port", stun_port, "STUN UDP port (0 = any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--metrics-addr", metrics_addr,
                 "Also serve GET /metrics (Prometheus text) on this host:port, plain HTTP, "
                 "to anyone who can reach it (port 0 = any free port)");
  if (auto code = cli.parse(argc, argv)) return *code;

  bool created = false;
  auto key = load_or_create_key_file(key_file, &created);
  if (!key) return cli.fail(key.error().wrap(key_file));
  if (created) cli.note(fmt::format("created key file {}", key_file));

  ServerOptions opts;
  opts.private_key = *key;
  opts.listen_addr = addr;
  opts.threads = threads;
  opts.verbose = verbose;
  opts.stun = stun;
  opts.stun_port = static_cast<uint16_t>(stun_port);
  opts.metrics_addr = metrics_addr;
  if (!mesh_file.empty()) {
    auto mesh = load_mesh_key_file(mesh_file);
    if (!mesh) return cli.fail(mesh.error().wrap(mesh_file));
    opts.mesh_key = *mesh;
  }
  if (!mesh_with.empty() && mesh_file.empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "--mesh-with needs --mesh-psk-file"));
  }
  opts.mesh_with = mesh_with;
  static std::mutex log_mu;
  opts.log = [](std::string_view line) {
    std::lock_guard lock(log_mu);
    std::cerr << "derp-serve: " << line << "\n" << std::flush;
  };

  // Block the signals before the relay threads start so only sigwait below receives them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto server = Server::start(std::move(opts));
  if (!server) return cli.fail(server.error());

  // The one stdout line scripts and tests parse.
  std::string line = fmt::format("derp-serve: listening on http://{}/derp key {}",
                                 (*server)->local_address(), (*server)->public_key().to_string());
  if (stun) {
    const std::string local = (*server)->local_address();
    line += fmt::format(" stun {}:{}", local.substr(0, local.rfind(':')), (*server)->stun_port());
  }
  if (!metrics_addr.empty()) line += " metrics " + (*server)->metrics_address();
  std::cout << line << std::endl;

  int sig = 0;
  sigwait(&sigs, &sig);
  cli.note(fmt::format("got {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM"));
  (*server)->stop();
  return tools::kExitOk;
}
