// The relay: DERP over HTTP on a listening socket, with derper's routing and endpoints.
// PROTOCOL.md §4 (behaviour), §6 (HTTP). Asio stays behind the pimpl.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "derp/key.h"
#include "derp/result.h"

namespace derp {

struct ServerOptions {
  NodePrivate private_key;                   // the relay's identity (required)
  std::string listen_addr = "127.0.0.1:3340";  // host:port; port 0 picks an ephemeral port
  int threads = 0;                           // event loops; 0 = one per core
  size_t per_client_queue_depth = 32;        // per queue (data and disco), as derper
  std::chrono::milliseconds write_timeout{2000};      // per flush; 0 = none
  // The same for connections that presented the mesh key (derper's privilegedWriteTimeout):
  // a peer relay's link carries many clients' packets, so it is given longer. 0 = none.
  std::chrono::milliseconds mesh_write_timeout{30000};
  // Back-pressure instead of loss (issue 8; derper has none). When a client's packet finds the
  // destination's data queue full while that destination is draining it (its current write
  // began less than queue_wait ago: a receiver that reads, only slower than it is sent to), the
  // relay stops reading from the sender until the destination takes the queue, for at most
  // queue_wait; then, or at once for a destination whose write has been stuck longer (a stalled
  // reader), the oldest queued packet is dropped as derper does (packets_dropped_reason
  // queue_head). Disco packets and mesh peers never wait. 0 = derper's behaviour: always drop.
  // 50 ms rather than less: under overload a receiver that drains slowly has writes pending
  // for several milliseconds, and a shorter bound takes it for a stalled reader, so its
  // senders are never paused and the relay spends itself reading and dropping (10 x 64 B at
  // --rate max: 2.5k delivered pkt/s at 5 ms, 1.4M at 50 ms; docs/BENCHMARKS.md).
  std::chrono::milliseconds queue_wait{50};
  std::chrono::milliseconds handshake_timeout{10000};  // per handshake step and HTTP head
  std::chrono::milliseconds keep_alive{60000};         // KeepAlive period (+ up to 5 s jitter)
  MeshKey mesh_key;                          // zero = no mesh peers
  // Relays to mesh with (derper's --mesh-with; needs mesh_key): "host[:port]" (as derper:
  // https://host[:port]/derp), "host[:port]/dialhost", or a full http(s):// URL, kept as
  // written. An entry naming this relay's own listen address is skipped. See docs/MESH.md.
  std::vector<std::string> mesh_with;
  // PEM file of extra roots the mesh links trust on top of the system store (OpenSSL's, which
  // SSL_CERT_FILE / SSL_CERT_DIR replace): peers with certificates from a private CA. "" = none.
  std::string mesh_ca_file;
  // A mesh link down this long forgets the keys it reported (they get PeerGone if no other
  // link or local client has them). Meanwhile packets for a key also reported by another,
  // working link go there (derper's multiForwarder). 0 = keep them until the link resyncs.
  std::chrono::milliseconds mesh_stale_after{5000};
  // false: PeerPresent frames to watchers carry no flags byte, as older derpers send them (for
  // tests of watchers that must cope with such relays).
  bool peer_present_flags = true;
  // One line per event worth knowing (start, refused client...). Called from relay threads.
  std::function<void(std::string_view)> log;
  bool verbose = false;                      // also log per-connection lines
  // STUN server (PROTOCOL.md §9.1–9.2) on UDP, bound to listen_addr's host. Off by default in
  // the library (derp-serve turns it on, as derper does); stun_port 0 picks an ephemeral port.
  bool stun = false;
  uint16_t stun_port = 3478;
  // host:port of a separate plain-HTTP listener serving GET /metrics (Prometheus text, the
  // same as /debug/varz) to anyone who can reach it; empty = none. Port 0 = ephemeral.
  std::string metrics_addr;
  // Who may reach /debug/ (vars, varz, the fault endpoint) and the mesh detail of /status.json
  // and the status page, by the peer address of the TCP connection: IPv4/IPv6 addresses or
  // prefixes ("10.0.0.0/8", "fd7a::/48"). Default: loopback only (derper's tsweb rule, minus its
  // Tailscale-IP allowance). Empty = nobody. An entry that is not an address fails start()
  // with kUsage. Behind a reverse proxy every peer is the proxy: keep the default or list none.
  std::vector<std::string> debug_allow_from = {"127.0.0.0/8", "::1"};
  // POST /debug/fault (fault injection at run time, for tests and drills) answers only when
  // this is on; off, it is a 404 saying how to turn it on. `faults` below apply either way.
  bool fault_endpoint = false;

  // ---- Limits (PROTOCOL.md §4.11).
  // Per-client receive token bucket: bytes of frame payload per second and burst. When a client
  // runs out the relay stops reading from it until tokens come back (TCP back-pressure, as
  // derper's --rate-config), never drops. 0 = off; the burst is raised to at least 65568 (one
  // largest frame). Mesh peers are exempt.
  int64_t client_rate_bytes_per_second = 0;
  int64_t client_rate_burst_bytes = 0;
  // Also tell clients the bucket in ServerInfo (TokenBucketBytesPerSecond / ...BytesBurst; not
  // to mesh peers). derper never does, and Go clients then drop every send over the budget
  // (PROTOCOL.md §7.6); libderp's client waits instead. Off: ServerInfo is derper's
  // {"version":2}.
  bool advertise_client_rate = false;
  // Listener accept rate (connections/s) and burst, as derper's --accept-connection-limit /
  // --accept-connection-burst: over the limit a connection is accepted and closed at once.
  // 0 = unlimited.
  double accept_rate = 0;
  int64_t accept_burst = 0;
  // TCP keepalive idle time and TCP_USER_TIMEOUT on accepted sockets (derper: 10 min, 15 s).
  // 0 = leave the system default.
  std::chrono::milliseconds tcp_keepalive{600000};
  std::chrono::milliseconds tcp_user_timeout{15000};
  // SO_RCVBUF on accepted sockets, bytes (the kernel doubles it for its bookkeeping); 0 = the
  // kernel's autotuning (up to net.ipv4.tcp_rmem's maximum, often 6-32 MB). With queue_wait's
  // back-pressure a sender's backlog waits in this buffer: a bound here bounds the latency of
  // an overloaded relay, at the cost of per-connection throughput on long-RTT paths
  // (buffer / RTT). derper leaves it to the kernel.
  size_t tcp_receive_buffer = 0;
  size_t max_header_bytes = 8192;  // HTTP request head limit (431-style 400 beyond)

  // ---- Admission (PROTOCOL.md §4.11). Mesh peers skip it.
  // POST {"NodePublic":"nodekey:…","Source":"ip"} here; 200 with {"Allow":true} admits. Asked
  // off the event loops; the handshake waits for the answer.
  std::string verify_client_url;
  bool verify_client_url_fail_open = true;  // admit when the URL cannot be reached
  std::chrono::milliseconds verify_client_timeout{5000};
  // File of allowed node keys (one nodekey:HEX per line, # comments); empty = everyone.
  // Loaded at start (an unreadable file fails start with kUsage); reload_allow_keys() re-reads.
  std::string allow_keys_file;

  // What "/" serves (derper's --home): "" = derper's home text followed by the live status
  // page (fed by /status.json, which is served whatever this says); "blank" = an empty 200
  // text/html page; an http:// or https:// URL = a 302 redirect there. Anything else fails
  // start() with kUsage.
  std::string home;

  // Names served at /bootstrap-dns (derper's --bootstrap-dns-names), resolved in the background.
  std::vector<std::string> bootstrap_dns_names;

  // ---- Fault injection: specs applied at start (see apply_fault; docs/CLI.md "--fault"). Only
  // drop=, latency= and health= make sense before clients exist; start() refuses the others
  // (kUsage, saying why).
  std::vector<std::string> faults;
  // Restarting advice sent by graceful_stop() (derper itself never sends the frame).
  std::chrono::milliseconds restart_reconnect_in{1000};
  std::chrono::milliseconds restart_try_for{30000};
  // TLS (PROTOCOL.md §6.3), derper's --certmode: "" = plain HTTP on listen_addr; "manual" =
  // TLS on listen_addr with cert_dir/HOSTNAME.crt and .key ("letsencrypt" is refused). With an
  // IP-address hostname and no files, a self-signed certificate is generated and saved there.
  std::string cert_mode;
  std::string cert_dir;
  std::string hostname;
  // Files are checked for changes (mtime, size, inode) at accept time, at most this often;
  // a change reloads them for new connections. 0 = only reload_certificates().
  std::chrono::milliseconds cert_check_interval{1000};
  // With TLS: derper's --http-port, a plain-HTTP listener on listen_addr's host serving
  // /generate_204, /debug/ (debug_allow_from) and a 302 to https:// for everything else. -1 = none;
  // 0 = ephemeral. Ignored without TLS, as derper does.
  int http_port = -1;
};

class Server {
 public:
  // Binds the listener (and the STUN socket when asked) and starts the event loops. Errors:
  // kUsage (bad address), kConnect (bind failed, e.g. address in use).
  static Result<std::unique_ptr<Server>> start(ServerOptions options);
  ~Server();  // stop() and join

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound address, e.g. "127.0.0.1:40123", and its port.
  std::string local_address() const;
  uint16_t port() const;
  NodePublic public_key() const;
  // The bound STUN UDP port, or 0 when STUN is off.
  uint16_t stun_port() const;
  // The bound metrics listener address, e.g. "127.0.0.1:40124", or "" when there is none.
  std::string metrics_address() const;
  // True when listen_addr serves TLS.
  bool tls() const;
  // "sha256-raw:<64 hex>" of the served leaf certificate's DER (a DERP map CertName,
  // PROTOCOL.md §6.3), or "" without TLS. Follows reloads.
  std::string cert_pin() const;
  // The bound --http-port listener address, or "" when there is none.
  std::string http_address() const;
  // Reads the certificate files again (derp-serve calls it on SIGHUP). Connections already
  // established keep their session; new ones get the new certificate. On error the old
  // certificate stays. kUsage without TLS.
  Result<void> reload_certificates();

  // Counters and gauges under derper's expvar names (PROTOCOL.md §6.6), e.g. "accepts",
  // "packets_received", "gauge_current_connections", "packets_dropped_reason_unknown_dest".
  std::map<std::string, int64_t> counters() const;

  // Closes the listener and every connection, then joins the loops. Idempotent.
  void stop();

  // Sends every connected client a ServerRestarting frame (PROTOCOL.md §4.9).
  void notify_restarting(std::chrono::milliseconds reconnect_in, std::chrono::milliseconds try_for);
  // notify_restarting() with the options' advice, waits until those frames are written, closes
  // every client (a WebSocket client gets a 1001 "going away" close frame and may answer it),
  // then stop(): clients see Restarting and then EOF. All within `flush_timeout`.
  void graceful_stop(std::chrono::milliseconds flush_timeout = std::chrono::milliseconds(2000));

  // Sets the relay's health problem: a Health frame to every client now and to every client
  // that connects while it is set. Empty = healthy (clients are told so).
  void set_health(std::string problem);

  // Re-reads ServerOptions::allow_keys_file (SIGHUP). On error the old list stays. Returns the
  // number of keys now allowed.
  Result<size_t> reload_allow_keys();

  // Applies one fault-injection spec (grammar in docs/CLI.md, "derp-serve --fault"), e.g.
  // "drop=25", "latency=200ms", "health=text", "restart=1s,30s", "close=nodekey:HEX",
  // "stall=nodekey:HEX", "unstall=nodekey:HEX", "churn=nodekey:HEX", "clear". kUsage on a bad
  // spec. Returns what was done.
  Result<std::string> apply_fault(std::string_view spec);

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Checks a ServerOptions::debug_allow_from list as start() would: its canonical text
// ("127.0.0.0/8,::1/128", "none" for an empty list), or kUsage naming the bad entry. For tools
// that check every flag before they write anything.
Result<std::string> describe_debug_allow_from(const std::vector<std::string>& entries);

}  // namespace derp
