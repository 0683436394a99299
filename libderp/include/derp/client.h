// A DERP-over-HTTP(S) client, the counterpart of Go's derphttp.Client (http:// and https://).
// PROTOCOL.md §3 (handshake), §6.1–6.3 (HTTP upgrade, fast start, TLS), §7 (client semantics).
//
// Blocking and thread-safe: any thread may call any method. Asio stays behind the pimpl; the
// client owns one event loop on a background thread that reads the connection continuously.
//
// Connection lifecycle (§7.1): the client connects lazily (connect(), send(), recv(), ping()
// and the mesh calls connect on demand; send_ping()/send_pong() never do). Any error on an
// established connection drops it and is returned; the next call reconnects. Each successful
// connect increments the connection generation (the first is 1). After close() every call
// returns a kClosed error; after cancel() or a requested ClientOptions::stop_token, a kClosed
// error saying "client cancelled".
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "derp/derp_map.h"
#include "derp/frame.h"
#include "derp/handshake.h"
#include "derp/key.h"
#include "derp/result.h"
#include "derp/tls_info.h"

namespace derp {

struct ClientOptions {
  NodePrivate private_key;  // our identity (required; see NodePrivate::generate())
  // http(s)://host[:port][/path]; port defaults to 80 / 443, path to /derp.
  std::string server_url;
  // https:// only (§6.3). Extra trusted roots (PEM file) on top of the system store.
  std::string ca_file;
  bool insecure = false;  // https:// without any certificate verification (tests only)
  // The name the relay's certificate must be valid for instead of the URL's host, or
  // "sha256-raw:<64 hex>": pin the SHA-256 of the leaf certificate's DER (derper's
  // --certmode=manual self-signed certs); chain trust is then not required, validity still is.
  std::string cert_name;
  std::optional<NodePublic> server_key;  // pin: the handshake fails (kProtocol) on mismatch
  MeshKey mesh_key;                      // zero = not a mesh client
  bool can_ack_pings = true;             // answer server Pings with Pongs automatically
  bool is_prober = false;
  bool watch_connection_changes = false;  // send WatchConns after every connect (mesh only)
  std::string app_name;                   // ClientInfo AppName (stats only); empty = omitted
  std::chrono::milliseconds connect_timeout{10000};  // the whole connect, DNS to ServerInfo
  std::chrono::milliseconds write_timeout{10000};    // one frame write; expiry drops the conn
  // Go's client read deadline (PROTOCOL.md §2.4): nothing from the relay for this long and the
  // connection is declared dead (kTimeout "… read deadline"), so a black-holed link does not
  // look healthy forever; the next call reconnects. The relay sends a KeepAlive every 60 s, so
  // an idle healthy link never reaches the default. Not counted while the reader is parked
  // for recv_queue_depth (the client is not reading then). 0 = no deadline.
  std::chrono::milliseconds read_timeout{120000};
  // TCP keepalive on every socket the client dials: SO_KEEPALIVE with this idle time and
  // probe interval (Go's net.Dialer default, 15 s). 0 = off.
  std::chrono::milliseconds tcp_keepalive{15000};
  // Received messages buffered before the reader stops reading (TCP back-pressure; the client
  // never drops). Must be ≥ 1.
  size_t recv_queue_depth = 256;
  // One line per event worth knowing (connects, dropped connections, skipped frames). Called
  // from the client's event-loop thread and API threads; must be thread-safe.
  std::function<void(std::string_view)> log;

  // ---- Region dialing (Go's NewRegionClient, PROTOCOL.md §7.5). When set, server_url is
  // ignored: every connect dials the region's nodes in order (STUNOnly nodes skipped), IPv4 and
  // IPv6 raced per node within 1.5 s, honouring IPv4/IPv6 "none" or explicit IPs, DERPPort,
  // CertName (name or sha256-raw pin) and InsecureForTests; the first node that accepts TCP is
  // used. A node other than the first gets the Ideal-Node header.
  std::optional<DERPRegion> region;
  // Go's AddressFamilySelector: asked before each region dial; true starts IPv4 200 ms after
  // IPv6 (IPv6 seen working). Null = race both at once. Called on the event-loop thread.
  std::function<bool()> prefer_ipv6;
  // Region nodes over http:// instead of https:// (Go's TS_DEBUG_USE_DERP_HTTP; tests only).
  bool region_plain_http = false;

  // Addresses resolved for a host are reused by reconnects for this long (0 = no cache).
  std::chrono::milliseconds dns_cache_ttl{std::chrono::minutes(10)};
  // Go's SetURLDialer: when set, opens every TCP connection instead of DNS + connect. Given the
  // host (name or IP) and port to reach, it returns a connected stream socket's file descriptor,
  // which the client then owns. Runs on the client's event-loop thread: keep it short.
  std::function<Result<int>(const std::string& host, uint16_t port)> url_dialer;

  // HTTP proxy: "http://[user:password@]host[:port]"; connections then go through it with
  // CONNECT (basic auth when the URL has a user). Empty: the environment decides when
  // proxy_from_environment (HTTPS_PROXY for https://, HTTP_PROXY for http://, NO_PROXY; never
  // for localhost or loopback IPs), as Go's derphttp does.
  std::string proxy;
  bool proxy_from_environment = true;

  // WebSocket transport (PROTOCOL.md §6.4): GET with Upgrade: websocket and subprotocol derp,
  // then the DERP stream in binary messages (no fast start). Without it, a relay answering the
  // DERP upgrade with 426 "Upgrade Required" (what derper says when the request arrived without
  // Upgrade: DERP, i.e. a proxy stripped it) makes the client retry once over WebSocket; the
  // connect report's note then says so.
  bool websocket = false;

  // Go's BaseContext: the caller's way to abort everything this client does. Once stop is
  // requested (from any thread), a connect in flight, a blocked recv() or ping() and a pending
  // write return promptly with kClosed ("client cancelled"), and every later call fails the same
  // way, as after close(). Client::cancel() does the same without a stop_source.
  std::stop_token stop_token;
};

// What the last successful connect did, phase by phase (derp-connect prints it). Phases that
// did not happen are zero (TLS for http://, HTTP upgrade under fast start, DNS for IP literals).
struct ConnectReport {
  std::chrono::nanoseconds dns{0};        // name resolution (0 when cached or an IP literal)
  std::chrono::nanoseconds tcp{0};        // TCP connect (after DNS)
  std::chrono::nanoseconds tls{0};        // TLS handshake
  std::chrono::nanoseconds http{0};       // HTTP upgrade request → 101
  std::chrono::nanoseconds handshake{0};  // DERP: ServerKey → ClientInfo → ServerInfo
  std::chrono::nanoseconds total{0};      // the whole connect
  bool dns_cached = false;                // the address came from the DNS cache
  bool custom_dialer = false;             // url_dialer opened the connection
  bool fast_start = false;                // the key came from the TLS meta cert (§6.2)
  std::string transport;                  // "tcp", "tls", "websocket" or "websocket+tls"
  std::string proxy;                      // "http://host:port" when tunnelled through a proxy
  std::string url;                        // the URL dialed, e.g. "https://derp1.example/derp"
  std::string node_name;                  // region dialing: the node used ("" for URL clients)
  std::string remote_addr;                // "127.0.0.1:3340"
  std::string local_addr;                 // "127.0.0.1:54321"
  NodePublic server_key;
  ServerInfo server_info;                 // includes the protocol version the relay speaks
  std::optional<TlsInfo> tls_info;        // https:// only
  uint64_t generation = 0;                // the connection this report describes
  // Something worth telling the operator, e.g. "a proxy stripped Upgrade: DERP; retried over
  // WebSocket" ("" when nothing).
  std::string note;
};

// ---- Received messages (owned copies; valid after the next call).
struct ServerInfoMessage {
  ServerInfo info;
};
struct ReceivedPacket {
  NodePublic src;
  std::vector<uint8_t> data;
};
struct PeerGoneMessage {
  NodePublic peer;
  PeerGoneReason reason = PeerGoneReason::kDisconnected;
};
struct PeerPresentMessage {
  NodePublic peer;
  bool has_endpoint = false;  // the relay sent the peer's address (≥ 50-byte frame)
  std::array<uint8_t, 16> ip16{};
  uint16_t port = 0;
  bool has_flags = false;  // the relay sent flags (≥ 51-byte frame)
  uint8_t flags = 0;
};
struct KeepAliveMessage {};
struct PingMessage {  // a relay asked us to echo this (already answered when can_ack_pings)
  PingData data{};
};
struct PongMessage {  // a Pong that no ping() call was waiting for
  PingData data{};
};
struct HealthMessage {
  std::string problem;  // empty = healthy again
};
struct ServerRestartingMessage {
  std::chrono::milliseconds reconnect_in{0};
  std::chrono::milliseconds try_for{0};
};

using ReceivedMessage = std::variant<ServerInfoMessage, ReceivedPacket, PeerGoneMessage,
                                     PeerPresentMessage, KeepAliveMessage, PingMessage, PongMessage,
                                     HealthMessage, ServerRestartingMessage>;

// "ServerInfo", "ReceivedPacket", ... (logs, tools).
const char* received_message_name(const ReceivedMessage& message);

struct ReceivedDetail {
  ReceivedMessage message;
  uint64_t generation = 0;  // the connection it arrived on (1 = first connect)
};

// What the client counted since it was created.
struct ClientStats {
  // PROTOCOL.md §7.6: send() calls that waited for the relay's advertised token bucket
  // (ServerInfo TokenBucketBytesPerSecond), and how long they waited in all. Go drops such
  // sends; libderp delays them, so nothing is lost.
  uint64_t send_rate_waits = 0;
  std::chrono::nanoseconds send_rate_waited{0};
};

struct ConnectedState {
  bool connected = false;
  bool connecting = false;
  bool closed = false;
  std::string local_addr;  // "127.0.0.1:54321" when connected
};

// ---- Go's DialRegionTLS (what netcheck uses to time HTTPS to a region without DERP).

struct TlsDialOptions {
  std::string ca_file;    // extra trusted roots (PEM) on top of the system store
  bool insecure = false;  // no certificate verification (tests only); nodes' InsecureForTests too
  std::chrono::milliseconds connect_timeout{10000};  // the whole dial, DNS to TLS finished
  std::function<bool()> prefer_ipv6;                 // as ClientOptions::prefer_ipv6
  std::function<void(std::string_view)> log;         // a failed node, before the next is tried
  // Once stop is requested (from any thread), the dial in progress ends promptly with kClosed
  // "dial cancelled (stop requested)" instead of waiting for connect_timeout.
  std::stop_token stop_token;
};

// A TLS connection to one region node, nothing on top (no HTTP, no DERP). Blocking; use it
// from one thread at a time. A read or write that exceeds its timeout closes the connection.
class TlsConnection {
 public:
  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  // At least one byte into buf. kIo "… connection closed by server" at EOF, kTimeout when
  // nothing came within `timeout`, kClosed after close().
  Result<size_t> read_some(std::span<uint8_t> buf, std::chrono::milliseconds timeout);
  // All of data, or an error as read_some's.
  Result<void> write(std::span<const uint8_t> data, std::chrono::milliseconds timeout);
  void close();  // idempotent

  const DERPNode& node() const;  // the node dialed (Go's returned *DERPNode)
  const TlsInfo& tls_info() const;
  // The dial's phases and addresses (dns, tcp, tls, total; local/remote_addr; node_name; url).
  const ConnectReport& report() const;

 private:
  struct Impl;
  explicit TlsConnection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend Result<std::unique_ptr<TlsConnection>> dial_region_tls(const DERPRegion&,
                                                                const TlsDialOptions&);
};

// Loads a PEM file of extra roots as a client's ca_file is loaded: kUsage naming the file when
// it cannot be read or holds no certificate. Lets a tool refuse a bad file before it starts.
Result<void> check_ca_file(const std::string& path);

// Dials the region's nodes as a region client does (map order, STUNOnly skipped, IPv4/IPv6
// raced per node, "none"/explicit IPs, DERPPort, CertName name or sha256-raw pin,
// InsecureForTests) and runs TLS on the first node that accepts TCP. No proxy. Errors: kUsage
// (no https:// node, bad CertName), kDns, kConnect, kTls, kTimeout, kClosed (stop_token).
Result<std::unique_ptr<TlsConnection>> dial_region_tls(const DERPRegion& region,
                                                       const TlsDialOptions& options = {});

class Client {
 public:
  // Validates the options (kUsage on a bad URL, zero private key, unreadable ca_file, malformed
  // sha256-raw pin) and starts the event-loop thread. Never connects.
  static Result<std::unique_ptr<Client>> create(ClientOptions options);
  // Go's NewNetcheckClient: a client without an identity (private_key, server_url and region are
  // ignored) that can only dial_region_tls(); every DERP call returns kUsage. Its ca_file,
  // insecure, connect_timeout, prefer_ipv6 and log apply to the dials.
  static Result<std::unique_ptr<Client>> create_netcheck(ClientOptions options);
  ~Client();  // close() and join

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects unless already connected. Errors: kDns, kConnect, kTls, kHttp, kProtocol, kTimeout.
  Result<void> connect();

  // Sends one packet (≤ 64 KiB, else kUsage) to dst through the relay. Connects on demand.
  // When the relay advertised a token bucket in ServerInfo (§7.6), each send is charged
  // 37 + size bytes and waits until the bucket has them (a send larger than the burst waits for
  // a full bucket and leaves it in debt); stats() counts the waits.
  Result<void> send(const NodePublic& dst, std::span<const uint8_t> data);

  // The next message, waiting up to `timeout`. Connects on demand. kTimeout when nothing came
  // (the connection stays up); a connection error once the messages read before it are drained.
  Result<ReceivedMessage> recv(std::chrono::milliseconds timeout);
  Result<ReceivedDetail> recv_detail(std::chrono::milliseconds timeout);

  // Sends a Ping with fresh random data and waits for its Pong, whether or not anyone is
  // calling recv() (the Pong is consumed here). Connects on demand. Returns the round trip.
  Result<std::chrono::nanoseconds> ping(std::chrono::milliseconds timeout);

  // Low-level frames. Never connect: kIo "not connected" when there is no connection.
  Result<void> send_ping(const PingData& data);
  Result<void> send_pong(const PingData& data);

  // Tells the relay whether it is our home (stats only). Remembered and re-sent after every
  // reconnect; sent now only if connected.
  Result<void> note_preferred(bool preferred);

  // Mesh-only frames (the relay closes the connection of a client without the mesh key).
  Result<void> close_peer(const NodePublic& target);
  Result<void> forward_packet(const NodePublic& src, const NodePublic& dst,
                              std::span<const uint8_t> data);
  Result<void> watch_conns();

  // Go's Client.DialRegionTLS with this client's TLS settings (see derp::dial_region_tls).
  // kClosed after close()/cancel(); a close(), cancel() or stop_token request during the dial
  // ends it promptly with that kClosed error. Works on every client, netcheck or not.
  Result<std::unique_ptr<TlsConnection>> dial_region_tls(const DERPRegion& region);

  // Closes the connection and the client for good. Idempotent.
  void close();
  // close(), but calls in flight and later ones report kClosed "client cancelled" (what a
  // requested ClientOptions::stop_token does). Idempotent; a no-op after close().
  void cancel();
  bool cancelled() const;

  // The relay's key once a connect has succeeded (zero before).
  NodePublic server_public_key() const;
  NodePublic self_public_key() const;
  // Local address of the current connection; never connects. kIo when not connected.
  Result<std::string> local_addr() const;
  ConnectedState connected_state() const;
  // Generation of the current (or last) connection; 0 before the first connect.
  uint64_t generation() const;
  // What TLS negotiated on the current (or last) connection; nullopt for http:// or before the
  // first connect.
  std::optional<TlsInfo> tls_info() const;
  // The canonical server URL, e.g. "http://127.0.0.1:3340/derp"; for a region client, the URL
  // of the node last connected ("" before the first connect).
  std::string server_url() const;
  // The report of the last successful connect; nullopt before the first one.
  std::optional<ConnectReport> last_connect_report() const;
  ClientStats stats() const;

  // Go's SetCanAckPings: whether server Pings are answered automatically from now on (the
  // ClientInfo of the next connect carries it too).
  void set_can_ack_pings(bool can_ack);
  bool is_prober() const;     // as configured (ClientInfo IsProber)
  MeshKey mesh_key() const;   // as configured (zero = not a mesh client)

 private:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace derp
