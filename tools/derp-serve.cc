// derp-serve: run a DERP relay (plain HTTP, or TLS as derper --certmode=manual), with derper's
// STUN server.
#include <fmt/format.h>
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>

#include "common/cli.h"
#include "common/exit_codes.h"
#include "derp/key.h"
#include "derp/server.h"

int main(int argc, char** argv) {
  using namespace derp;
  tools::ToolCli cli("derp-serve", "Run a DERP relay (plain HTTP, or TLS with --certmode manual).");
  std::string addr = "127.0.0.1:3340";
  std::string key_file = "derper.key";
  std::string mesh_file;
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
  // ---- TLS / --http-port (derper's -certmode, -certdir, -hostname, -http-port).
  std::string cert_mode;  // "" = plain HTTP on -a (derper --dev); derper's default is letsencrypt
  std::string cert_dir;
  std::string hostname;
  int http_port = 80;  // derper's default; only used with TLS
  app.add_option("--certmode", cert_mode,
                 "\"manual\": serve TLS on --addr with CERTDIR/HOSTNAME.crt and .key (self-signed "
                 "and generated when HOSTNAME is an IP and the files are missing). Default: plain "
                 "HTTP. \"letsencrypt\" is not supported");
  app.add_option("--certdir", cert_dir, "Directory of HOSTNAME.crt/.key (with --certmode manual)");
  app.add_option("--hostname", hostname,
                 "TLS hostname or IP: names the cert files, must match the certificate");
  app.add_option("--http-port", http_port,
                 "With TLS: plain-HTTP port on --addr's host (/generate_204, /debug/, else 302 to "
                 "https); -1 = none, 0 = any free port")
      ->check(CLI::Range(-1, 65535))
      ->capture_default_str();
  if (auto code = cli.parse(argc, argv)) return *code;
  if (cert_mode == "letsencrypt") {
    return cli.fail(Error(
        ErrorKind::kUsage,
        "--certmode letsencrypt is not supported (no ACME client); use --certmode manual with "
        "--certdir and --hostname"));
  }
  if (!cert_mode.empty() && cert_mode != "manual") {
    return cli.fail(
        Error(ErrorKind::kUsage, fmt::format("--certmode {:?}: want \"manual\"", cert_mode)));
  }
  if (cert_mode.empty() && addr.size() > 4 && addr.ends_with(":443")) {
    return cli.fail(
        Error(ErrorKind::kUsage,
              "--addr on port 443 means TLS with Let's Encrypt in derper, which is not supported; "
              "use --certmode manual --certdir DIR --hostname NAME"));
  }
  if (cert_mode.empty() && (!cert_dir.empty() || !hostname.empty())) {
    cli.note("--certdir/--hostname have no effect without --certmode manual (as in derper)");
  }
  if (cert_mode == "manual" && cert_dir.empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "--certmode manual needs --certdir"));
  }
  if (cert_mode == "manual" && hostname.empty()) {
    return cli.fail(Error(ErrorKind::kUsage, "--certmode manual needs --hostname"));
  }

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
  opts.cert_mode = cert_mode;
  opts.cert_dir = cert_dir;
  opts.hostname = hostname;
  opts.http_port = cert_mode.empty() ? -1 : http_port;
  if (!mesh_file.empty()) {
    auto mesh = load_mesh_key_file(mesh_file);
    if (!mesh) return cli.fail(mesh.error().wrap(mesh_file));
    opts.mesh_key = *mesh;
  }
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
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto server = Server::start(std::move(opts));
  if (!server) return cli.fail(server.error());

  // The one stdout line scripts and tests parse.
  std::string line = fmt::format("derp-serve: listening on {}://{}/derp key {}",
                                 (*server)->tls() ? "https" : "http", (*server)->local_address(),
                                 (*server)->public_key().to_string());
  if (!(*server)->http_address().empty()) line += " http " + (*server)->http_address();
  if ((*server)->tls()) line += " pin " + (*server)->cert_pin();
  if (stun) {
    const std::string local = (*server)->local_address();
    line += fmt::format(" stun {}:{}", local.substr(0, local.rfind(':')), (*server)->stun_port());
  }
  if (!metrics_addr.empty()) line += " metrics " + (*server)->metrics_address();
  std::cout << line << std::endl;

  int sig = 0;
  while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
    if ((*server)->tls()) {
      // The relay logs the outcome (new pin, or why the old certificate stays).
      (void)(*server)->reload_certificates();
    } else {
      cli.note("got SIGHUP: nothing to reload");
    }
  }
  cli.note(fmt::format("got {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM"));
  (*server)->stop();
  return tools::kExitOk;
}
