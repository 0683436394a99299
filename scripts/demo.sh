#!/usr/bin/env bash
# README command 1, the main job on a local default: installs dependencies, builds (Release),
# starts derp-serve on 127.0.0.1, pings it with derp-ping, sends a packet from one fresh key to
# another with derp-send -> derp-recv, prints what happened, stops the relay.
# Exits non-zero if any step failed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh
echo "== building (Release) =="
bash scripts/build.sh "$root/build/release" -DCMAKE_BUILD_TYPE=Release -DDERP_BUILD_TESTS=OFF \
  -DCMAKE_UNITY_BUILD=ON \
  >/dev/null
bin="$root/build/release/bin"

tmp=$(mktemp -d)
relay_pid=""
recv_pid=""
cleanup() {
  [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null || true
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() { echo "demo: FAILED: $*" >&2; exit 1; }

# A relay on an ephemeral loopback port. Its first stdout line says where it listens; we block
# on that line (read -t) instead of sleeping.
mkfifo "$tmp/relay.out"
"$bin/derp-serve" -a 127.0.0.1:0 --stun-port 0 -c "$tmp/relay.key" >"$tmp/relay.out" 2>"$tmp/relay.log" &
relay_pid=$!
exec 3<"$tmp/relay.out"
read -r -t 10 -u 3 line || fail "derp-serve did not start: $(cat "$tmp/relay.log")"
url=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' <<<"$line")
relay_key=$(sed -n 's/.* key \(nodekey:[0-9a-f]*\).*/\1/p' <<<"$line")
[ -n "$url" ] || fail "unexpected derp-serve line: $line"
echo "relay:  $url  ($relay_key)"

echo "== derp-ping =="
"$bin/derp-ping" "$url" --server-key "$relay_key" --count 3 --interval 200ms ||
  fail "derp-ping"

echo "== derp-send -> derp-recv =="
"$bin/derp-keygen" --out "$tmp/alice.key" >/dev/null
bob=$("$bin/derp-keygen" --out "$tmp/bob.key")
mkfifo "$tmp/recv.err"
"$bin/derp-recv" "$url" --key-file "$tmp/bob.key" --count 1 --timeout 10s \
  >"$tmp/recv.out" 2>"$tmp/recv.err" &
recv_pid=$!
exec 4<"$tmp/recv.err"
read -r -t 10 -u 4 ready || fail "derp-recv did not get ready"
echo "$ready"
message="hello from libderp at $(date +%T)"
"$bin/derp-send" "$url" --key-file "$tmp/alice.key" --to "$bob" --data "$message" ||
  fail "derp-send"
wait "$recv_pid" || fail "derp-recv exited with $?"
recv_pid=""
cat "$tmp/recv.out"
grep -qF "$message" "$tmp/recv.out" || fail "bob did not receive the message"

kill -TERM "$relay_pid"
wait "$relay_pid" || fail "derp-serve did not exit cleanly on SIGTERM"
relay_pid=""
echo "== ok: relay answered pings and delivered alice's packet to bob =="
