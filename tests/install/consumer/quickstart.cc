// libderp in one page: a relay in-process on 127.0.0.1, two clients, one packet, one ping.
// docs/API.md shows this file; the tests build it in the tree and against an installed prefix.
#include <derp/client.h>
#include <derp/server.h>
#include <derp/version.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <variant>

using namespace std::chrono_literals;

// Prints what failed and returns the exit status for it.
static int fail(const char* what, const derp::Error& error) {
  std::fprintf(stderr, "quickstart: %s: %s\n", what, error.message.c_str());
  return 1;
}

int main() {
  std::printf("libderp %s (headers %s)\n", derp::version(), DERP_VERSION);

  // 1. A relay on an ephemeral loopback port with a fresh identity (derp-serve does the same
  //    with a key file: derp::load_or_create_key_file).
  derp::ServerOptions relay_options;
  relay_options.private_key = derp::NodePrivate::generate();
  relay_options.listen_addr = "127.0.0.1:0";
  relay_options.threads = 1;
  auto relay = derp::Server::start(std::move(relay_options));
  if (!relay) return fail("start relay", relay.error());
  const std::string url = "http://" + (*relay)->local_address() + "/derp";
  std::printf("relay %s key %s\n", url.c_str(), (*relay)->public_key().to_string().c_str());

  // 2. Two clients, each with its own node key, pinning the relay's key.
  auto make_client = [&](derp::NodePrivate key) {
    derp::ClientOptions o;
    o.private_key = std::move(key);
    o.server_url = url;
    o.server_key = (*relay)->public_key();
    o.connect_timeout = 5s;
    return derp::Client::create(std::move(o));
  };
  auto alice = make_client(derp::NodePrivate::generate());
  auto bob = make_client(derp::NodePrivate::generate());
  if (!alice) return fail("alice", alice.error());
  if (!bob) return fail("bob", bob.error());
  // Bob must be connected before the packet arrives: the relay delivers only to connected keys.
  if (auto c = (*bob)->connect(); !c) return fail("bob connect", c.error());

  // 3. Alice sends one packet to Bob's public key; the client connects on demand.
  const std::string text = "hello, bob";
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  if (auto s = (*alice)->send((*bob)->self_public_key(), {bytes, text.size()}); !s) {
    return fail("alice send", s.error());
  }

  // 4. Bob receives: recv() returns every message in order (ServerInfo, keep-alives...) and
  //    the packet among them.
  for (;;) {
    auto message = (*bob)->recv(5s);
    if (!message) return fail("bob recv", message.error());
    if (const auto* packet = std::get_if<derp::ReceivedPacket>(&*message)) {
      const std::string got(packet->data.begin(), packet->data.end());
      std::printf("bob got \"%s\" from %s\n", got.c_str(), packet->src.to_string().c_str());
      if (packet->src != (*alice)->self_public_key() || got != text) return 1;
      break;
    }
  }

  // 5. A DERP Ping/Pong round trip to the relay.
  auto rtt = (*alice)->ping(5s);
  if (!rtt) return fail("ping", rtt.error());
  std::printf("ping %.3f ms\n", std::chrono::duration<double, std::milli>(*rtt).count());

  // 6. Clients close on destruction; the relay stops and joins its threads on destruction.
  (*alice)->close();
  (*bob)->close();
  (*relay)->stop();
  std::printf("ok\n");
  return 0;
}
