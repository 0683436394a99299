// derp-serve: run a DERP relay (plain HTTP, or TLS as derper --certmode=manual), with derper's
// STUN server. Takes derper's flag names, with one dash or two (tools/common/go_flags.h).
#include <fmt/format.h>
#include <signal.h>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "common/cli.h"
#include "common/duration.h"
#include "common/exit_codes.h"
#include "common/go_flags.h"
#include "common/mesh_key_source.h"
#include "derp/client.h"
#include "derp/key.h"
#include "derp/server.h"

namespace {

// derper flags derp-serve does not implement: refused by name, never ignored.
derp::tools::GoFlagPolicy derper_policy() {
  derp::tools::GoFlagPolicy p;
  p.short_names = "acv";
  p.refused = {
      {"dev", "use -a 127.0.0.1:3340 (derp-serve's default) instead"},
      {"derp", "derp-serve always serves DERP"},
      {"verify-clients", "no tailscaled integration; use --verify-client-url or --allow-keys"},
      {"socket", "no tailscaled integration (--verify-clients)"},
      {"unpublished-bootstrap-dns-names", "use --bootstrap-dns-names"},
      {"secrets-url", "no setec support; use --mesh-psk-file"},
      {"secrets-path-prefix", "no setec support; use --mesh-psk-file"},
      {"secrets-cache-dir", "no setec support; use --mesh-psk-file"},
      {"rate-config", "use --client-rate-bytes-per-sec and --client-rate-burst-bytes"},
      {"ace", "no ACE (CONNECT) proxy"},
  };
  return p;
}

// http:// or https://, any case (the library refuses other schemes too; this names the flag).
bool server_admission_url_ok(std::string_view url) {
  auto lower = [](std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
  };
  const std::string l = lower(url.substr(0, 8));
  return (l.rfind("http://", 0) == 0 && url.size() > 7) || (l == "https://" && url.size() > 8);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    std::string part = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!part.empty()) out.push_back(std::move(part));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace derp;
  tools::ToolCli cli("derp-serve", "Run a DERP relay (plain HTTP, or TLS with --certmode manual).");
  auto normalised = tools::normalise_go_flags(argc, argv, derper_policy());
  if (normalised.error) return cli.fail(Error(ErrorKind::kUsage, *normalised.error));
  tools::ArgvHolder args(std::move(normalised.args));

  std::string addr = "127.0.0.1:3340";
  std::string key_file = "derper.key";
  std::string mesh_file;
  std::string mesh_ca_file;
  std::vector<std::string> mesh_with;
  int threads = 0;
  bool verbose = false;
  bool stun = true;  // derper's default
  int stun_port = 3478;
  std::string metrics_addr;
  std::string verify_url;
  bool verify_fail_open = true;  // derper's default
  std::string allow_keys;
  double accept_limit = 0;
  int64_t accept_burst = 1;  // as the library's 0
  int64_t max_header_bytes = 8192;
  int64_t tcp_rcvbuf = 0;
  int64_t rate = 0, rate_burst = 65568;  // the smallest burst the library allows
  std::string bootstrap_names;
  std::vector<std::string> faults;
  std::string debug_allow = "127.0.0.0/8,::1";  // ServerOptions' default
  bool fault_endpoint = false;
  ServerOptions opts;
  // Duration flags: declared and parsed from one table (text default, ServerOptions field).
  struct DurationFlag {
    const char* flag;
    std::string text;
    std::chrono::milliseconds* out;
    const char* help;
  };
  std::array<DurationFlag, 8> durations = {{
      {"--tcp-keepalive-time", "10m", &opts.tcp_keepalive,
       "TCP keepalive idle time and probe interval on accepted sockets (0 = off)"},
      {"--tcp-user-timeout", "15s", &opts.tcp_user_timeout,
       "TCP_USER_TIMEOUT on accepted sockets (0 = off)"},
      {"--tcp-write-timeout", "2s", &opts.write_timeout,
       "Close a client whose write stalls this long (0 = no timeout)"},
      {"--mesh-write-timeout", "30s", &opts.mesh_write_timeout,
       "The same for connections with the mesh key, as derper's 30 s for peer relays "
       "(0 = no timeout)"},
      {"--queue-wait", "50ms", &opts.queue_wait,
       "Pause a sender up to this long when a draining receiver's queue is full, instead of "
       "dropping (0 = derper's drop-oldest at once)"},
      {"--handshake-timeout", "10s", &opts.handshake_timeout,
       "Deadline for the HTTP request head and each DERP handshake step"},
      {"--restart-reconnect-in", "1s", &opts.restart_reconnect_in,
       "ServerRestarting advice sent on SIGTERM/SIGINT: reconnect after this"},
      {"--restart-try-for", "30s", &opts.restart_try_for,
       "ServerRestarting advice sent on SIGTERM/SIGINT: keep trying this long"},
  }};
  auto& app = cli.app();
  auto non_negative = [&app](const char* name, auto& value, const char* help) {
    // --accept-connection-limit is a rate: a decimal is fine there.
    constexpr bool kInteger = std::is_integral_v<std::remove_reference_t<decltype(value)>>;
    return app.add_option(name, value, help)->check(tools::at_least(0, kInteger));
  };
  app.add_option("-a,--addr", addr, "Listen address host:port (port 0 = any free port)")
      ->type_name("HOST:PORT")
      ->capture_default_str();
  app.add_option("-c,--config", key_file,
                 "Relay key file, derper's JSON format; created (mode 0600) if missing. "
                 "Default: derper.key in the current directory")
      ->type_name("FILE")
      ->capture_default_str();
  auto* mesh_file_opt =
      app.add_option("--mesh-psk-file", mesh_file,
                     "File holding the 64-hex mesh key. Not given: TAILSCALE_DERPER_MESH_KEY, "
                     "else derper's /home/derp/keys/derp-mesh.key or $HOME/keys/derp-mesh.key "
                     "if one exists; \"\" = none")
          ->type_name("FILE");
  app.add_option("--mesh-with", mesh_with,
                 "Relays to mesh with, comma-separated (derper's --mesh-with): host[:port] "
                 "(https://host[:port]/derp, as derper), host/dialhost, or http(s):// URLs as "
                 "written; this relay's own address is skipped. Needs a mesh key")
      ->type_name("RELAYS")
      ->delimiter(',');
  app.add_option("--mesh-ca-file", mesh_ca_file,
                 "Mesh links also trust the CA certificates in this PEM file (peers with "
                 "certificates from a private CA); the system store, or SSL_CERT_FILE, still "
                 "applies")
      ->type_name("FILE");
  non_negative("--threads", threads, "Event loops (0 = one per core)")
      ->type_name("N")
      ->capture_default_str();
  app.add_flag("-v,--verbose", verbose, "Log every connection");
  app.add_flag("--stun", stun,
               "Run the STUN server (UDP, same host as --addr; default: on); --stun=false: off")
      ->capture_default_str();
  app.add_option("--stun-port", stun_port, "STUN UDP port (0 = any free port)")
      ->type_name("PORT")
      ->check(tools::in_range(0, 65535))
      ->capture_default_str();
  app.add_option("--metrics-addr", metrics_addr,
                 "Also serve GET /metrics (Prometheus text) on this host:port, plain HTTP, "
                 "to anyone who can reach it (port 0 = any free port)")
      ->type_name("HOST:PORT");
  // ---- TLS / --http-port (derper's -certmode, -certdir, -hostname, -http-port).
  std::string cert_mode;  // "" = plain HTTP on -a (derper --dev); derper's default is letsencrypt
  std::string cert_dir;
  std::string hostname;
  int http_port = 80;  // derper's default; only used with TLS
  app.add_option("--certmode", cert_mode,
                 "\"manual\": serve TLS on --addr with CERTDIR/HOSTNAME.crt and .key (self-signed "
                 "and generated when HOSTNAME is an IP and the files are missing). Default: plain "
                 "HTTP. \"letsencrypt\" is not supported")
      ->type_name("MODE");
  app.add_option("--certdir", cert_dir, "Directory of HOSTNAME.crt/.key (with --certmode manual)")
      ->type_name("DIR");
  app.add_option("--hostname", hostname,
                 "TLS hostname or IP: names the cert files, must match the certificate")
      ->type_name("NAME");
  app.add_option("--http-port", http_port,
                 "With TLS: plain-HTTP port on --addr's host (/generate_204, /debug/, else 302 to "
                 "https); -1 = none, 0 = any free port")
      ->type_name("PORT")
      ->check(tools::in_range(-1, 65535))
      ->capture_default_str();
  app.add_option("--verify-client-url", verify_url,
                 "Admission controller: POST {NodePublic, Source} here; 200 {\"Allow\":true} "
                 "admits")
      ->type_name("URL");
  app.add_flag("--verify-client-url-fail-open", verify_fail_open,
               "Admit clients when the admission URL is unreachable (default: true; =false: refuse "
               "them)")
      ->capture_default_str();
  app.add_option("--allow-keys", allow_keys,
                 "Only admit the node keys in this file (nodekey:HEX per line, # comments); "
                 "re-read on SIGHUP")
      ->type_name("FILE");
  non_negative("--accept-connection-limit", accept_limit,
               "Accepted connections per second (0 = unlimited); excess ones are closed")
      ->type_name("RATE");
  non_negative("--accept-connection-burst", accept_burst,
               "Burst for --accept-connection-limit")
      ->type_name("N");
  for (auto& d : durations) {
    app.add_option(d.flag, d.text, d.help)->type_name("DURATION")->capture_default_str();
  }
  app.add_option("--max-header-bytes", max_header_bytes, "Largest HTTP request head accepted")
      ->type_name("BYTES")
      ->check(tools::in_range(int64_t{1024}, int64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--tcp-rcvbuf", tcp_rcvbuf,
                 "SO_RCVBUF of accepted sockets in bytes (0 = kernel autotuning); bounds how much "
                 "an overloaded relay's senders can queue (latency) at a cost in long-RTT "
                 "throughput")
      ->type_name("BYTES")
      ->check(tools::in_range(int64_t{0}, int64_t{1} << 30))
      ->capture_default_str();
  non_negative("--client-rate-bytes-per-sec", rate,
               "Per-client receive limit (token bucket; 0 = off); not advertised unless "
               "--advertise-client-rate")
      ->type_name("BYTES");
  non_negative("--client-rate-burst-bytes", rate_burst,
               "Token bucket burst (at least 65568, one largest frame)")
      ->type_name("BYTES");
  app.add_flag("--advertise-client-rate", opts.advertise_client_rate,
               "Tell clients the --client-rate-* bucket in ServerInfo (derper never does; Go "
               "clients then drop sends over it, libderp's wait)")
      ->capture_default_str();
  app.add_option("--bootstrap-dns-names", bootstrap_names,
                 "Comma-separated names served at /bootstrap-dns")
      ->type_name("NAMES");
  app.add_option("--home", opts.home,
                 "What / serves (derper's -home): empty = derper's home text and the live status "
                 "page, \"blank\" = an empty page, an http(s):// URL = a 302 redirect there")
      ->type_name("blank|URL");
  app.add_option("--debug-allow-from", debug_allow,
                 "Who may reach /debug/ (vars, varz, the fault endpoint) and the status page's "
                 "mesh detail: comma-separated IP addresses or prefixes, by the TCP peer "
                 "address; \"none\" = nobody")
      ->type_name("PREFIXES")
      ->capture_default_str();
  app.add_flag("--fault-endpoint", fault_endpoint,
               "Serve POST /debug/fault (run-time fault injection for tests and drills) to "
               "--debug-allow-from peers; off: 404")
      ->capture_default_str();
  app.add_option("--fault", faults,
                 "Fault injection at start: drop=PERCENT, latency=DURATION, health=TEXT "
                 "(repeatable; the rest via POST /debug/fault with --fault-endpoint, see docs/CLI.md)")
      ->type_name("SPEC");
  std::string refused;
  for (const auto& [flag, why] : derper_policy().refused) {
    refused += (refused.empty() ? "" : "; ") + ("-" + flag + " (" + why + ")");
  }
  cli.set_manual({
      .description =
          "derp-serve runs a DERP relay: the protocol, routing and limits of Tailscale's derper, "
          "its STUN server on UDP, mesh forwarding with other relays (--mesh-with), an admission "
          "URL or key list, and Prometheus metrics. It serves plain HTTP on --addr, or TLS as "
          "derper's --certmode manual; with an IP --hostname and no certificate files it "
          "generates a self-signed certificate and prints its sha256-raw: pin for a DERP map's "
          "CertName.\n\n"
          "On start it prints one line on standard output, which scripts parse: \"derp-serve: "
          "listening on http(s)://H:P/derp key nodekey:...\", followed by the pin, the "
          "--http-port, STUN and metrics listeners when they run. SIGHUP re-reads --allow-keys "
          "and the certificate files. SIGINT and SIGTERM send every client a ServerRestarting "
          "frame (--restart-reconnect-in, --restart-try-for), close every connection within 2 "
          "s, and exit 0.\n\n"
          "The key file (-c) and its missing directories (mode 0700) are created on first "
          "start. GET / serves derper's home text and a live status page fed by /status.json "
          "(aggregate figures only; --home blank or a URL as derper). As a system service, "
          "derp-serve.service (systemd, from the derp-tools package) runs it as a dynamic user "
          "with its key in /var/lib/derp and its flags in DERP_SERVE_ARGS of "
          "/etc/default/derp-serve: systemctl reload sends SIGHUP, systemctl stop SIGTERM.\n\n"
          "Faults for tests (drop, latency, health at start; close, stall, churn, restart and "
          "clear while running) are injected with --fault, or with POST /debug/fault?SPEC when "
          "--fault-endpoint is on. /debug/ and the status page's mesh detail answer only "
          "--debug-allow-from peers (loopback by default); / (aggregates), /status.json "
          "without mesh detail, /derp/probe, /generate_204 and --metrics-addr answer anyone.",
      .examples = {{"A relay on loopback, its key file created on first start, with metrics:",
                    "derp-serve -a 127.0.0.1:3340 -c derper.key --metrics-addr 127.0.0.1:9100"},
                   {"TLS with a generated self-signed certificate for an IP:",
                    "derp-serve -a 127.0.0.1:8443 --certmode manual --certdir certs --hostname "
                    "127.0.0.1"},
                   {"Any free ports, as tests use it (the stdout line names them):",
                    "derp-serve -a 127.0.0.1:0 --stun-port 0"}},
      .options_note =
          "derp-serve takes derper's flags as Go's flag package does: every long flag below "
          "may also be written with one dash (-stun-port 0, as derper spells it), as -name "
          "value or -name=value, and booleans as -stun or -stun=false. derper flags it does "
          "not implement are refused with exit status 2, naming them:\n\n" +
          refused + ".",
      .environment =
          {{tools::kMeshKeyEnv,
            "The mesh key (64 hex digits) when --mesh-psk-file is not given. derper reads it "
            "only with -dev, which derp-serve does not have."},
           {tools::kMeshPathsEnv,
            "Colon-separated paths searched for a mesh key file instead of derper's "
            "/home/derp/keys/derp-mesh.key and $HOME/keys/derp-mesh.key (the first that exists "
            "is used), when neither --mesh-psk-file nor TAILSCALE_DERPER_MESH_KEY is given."},
           {"SSL_CERT_FILE, SSL_CERT_DIR",
            "OpenSSL's trusted roots for https:// mesh links, instead of the system's; "
            "--mesh-ca-file adds to them."}},
  });
  if (auto code = cli.parse(args.argc(), args.argv())) return *code;

  for (const auto& d : durations) {
    auto v = tools::parse_duration(d.text);
    if (!v) return cli.fail(v.error().wrap(d.flag));
    *d.out = tools::to_millis(*v);
  }
  if (opts.handshake_timeout.count() == 0) {
    return cli.fail(Error(ErrorKind::kUsage, "--handshake-timeout: must be more than 0"));
  }
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

  if (!verify_url.empty() && !server_admission_url_ok(verify_url)) {
    return cli.fail(Error(ErrorKind::kUsage,
                          fmt::format("--verify-client-url {:?}: want an http:// or https:// URL "
                                      "(anything else would fail every request and, fail-open, "
                                      "admit every client)",
                                      verify_url)));
  }
  if (debug_allow != "none") opts.debug_allow_from = split_commas(debug_allow);
  else opts.debug_allow_from.clear();
  if (auto allow = describe_debug_allow_from(opts.debug_allow_from); !allow) {
    return cli.fail(Error(ErrorKind::kUsage, "--debug-allow-from " + allow.error().message));
  }
  opts.fault_endpoint = fault_endpoint;
  // Every flag is checked, and the mesh key read, before anything is written: a refused
  // command line never leaves a new key file behind.
  auto mesh = tools::choose_mesh_key(
      tools::mesh_key_inputs_from_environment(mesh_file_opt->count() > 0, mesh_file));
  if (!mesh) return cli.fail(mesh.error());  // names the file or the variable
  if (!mesh_with.empty() && !mesh->key) {
    return cli.fail(Error(ErrorKind::kUsage,
                          fmt::format("--mesh-with needs --mesh-psk-file (or {}, or a key file "
                                      "at derper's default path)",
                                      tools::kMeshKeyEnv)));
  }
  if (!mesh->note.empty()) cli.note(mesh->note);
  if (mesh->key) opts.mesh_key = *mesh->key;
  if (!mesh_ca_file.empty()) {
    if (mesh_with.empty()) cli.note("--mesh-ca-file has no effect without --mesh-with");
    if (auto ca = check_ca_file(mesh_ca_file); !ca) {
      return cli.fail(ca.error().wrap("--mesh-ca-file"));
    }
  }

  bool created = false;
  auto key = load_or_create_key_file(key_file, &created);  // its errors name the file
  if (!key) return cli.fail(key.error());
  if (created) cli.note(fmt::format("created key file {}", key_file));

  opts.private_key = *key;
  opts.listen_addr = addr;
  opts.threads = threads;
  opts.verbose = verbose;
  opts.stun = stun;
  opts.stun_port = static_cast<uint16_t>(stun_port);
  opts.metrics_addr = metrics_addr;
  opts.verify_client_url = verify_url;
  opts.verify_client_url_fail_open = verify_fail_open;
  opts.allow_keys_file = allow_keys;
  opts.accept_rate = accept_limit;
  opts.accept_burst = accept_burst;
  opts.max_header_bytes = static_cast<size_t>(max_header_bytes);
  opts.tcp_receive_buffer = static_cast<size_t>(tcp_rcvbuf);
  opts.client_rate_bytes_per_second = rate;
  opts.client_rate_burst_bytes = rate_burst;
  opts.bootstrap_dns_names = split_commas(bootstrap_names);
  opts.faults = faults;
  opts.cert_mode = cert_mode;
  opts.cert_dir = cert_dir;
  opts.hostname = hostname;
  opts.http_port = cert_mode.empty() ? -1 : http_port;
  opts.mesh_with = mesh_with;
  opts.mesh_ca_file = mesh_ca_file;
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
  for (;;) {
    sigwait(&sigs, &sig);
    if (sig != SIGHUP) break;
    if (allow_keys.empty() && !(*server)->tls()) {
      cli.note("got SIGHUP; nothing to reload");
      continue;
    }
    if ((*server)->tls()) {
      // The relay logs the outcome (new pin, or why the old certificate stays).
      (void)(*server)->reload_certificates();
    }
    if (allow_keys.empty()) continue;
    auto n = (*server)->reload_allow_keys();
    if (!n) {
      cli.note(fmt::format("got SIGHUP; keeping the old allow-keys list: {}", n.error().message));
    } else {
      cli.note(fmt::format("got SIGHUP; reloaded {}: {} key(s)", allow_keys, *n));
    }
  }
  cli.note(fmt::format("got {}, telling clients the relay restarts, shutting down",
                       sig == SIGINT ? "SIGINT" : "SIGTERM"));
  (*server)->graceful_stop();
  return tools::kExitOk;
}
