#!/usr/bin/env bash
# The standard derp-bench matrix against a fresh derp-serve on 127.0.0.1 (an ephemeral port),
# printed as one table. docs/BENCHMARKS.md records its output.
#
# Usage: bench/run.sh
# Environment:
#   BUILD_DIR   build directory with bin/derp-serve and bin/derp-bench (default: build-release,
#               configured as Release and built when the binaries are missing)
#   DURATION    measured time per load run (default 2s); WARMUP (default 500ms)
#   BENCH_THREADS  derp-bench event loops (default 1); SERVE_THREADS derp-serve loops (default 0:
#               one per core)
#   IDLE_CONNS  idle connections (default 10000); STORM_CONNS (default 5000)
#   JSON_OUT    also keep every run's JSON line in this file
#   WS          1: also the WebSocket rows (derp-bench --websocket; default 0: off)
# TLS rows run when derp-serve has --certmode (a self-signed certificate for 127.0.0.1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-release}
duration=${DURATION:-2s}
warmup=${WARMUP:-500ms}
bench_threads=${BENCH_THREADS:-1}
serve_threads=${SERVE_THREADS:-0}
idle_conns=${IDLE_CONNS:-10000}
storm_conns=${STORM_CONNS:-5000}
ws=${WS:-0}

if [ ! -x "$build/bin/derp-serve" ] || [ ! -x "$build/bin/derp-bench" ]; then
  echo "bench/run.sh: building derp-serve and derp-bench (Release) in $build" >&2
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDERP_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j 2 --target derp-serve derp-bench >/dev/null
fi
serve=$build/bin/derp-serve
bench=$build/bin/derp-bench
command -v jq >/dev/null || { echo "bench/run.sh: needs jq" >&2; exit 2; }

# Both the relay and derp-bench hold thousands of sockets in the idle test.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

tmp=$(mktemp -d)
results=$tmp/results.jsonl
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  if [ -n "${JSON_OUT:-}" ]; then cp "$results" "$JSON_OUT" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# run LABEL derp-bench-args...: one JSON line, labelled, appended to the results.
run() {
  local label=$1
  shift
  local out
  if ! out=$("$bench" "$@" --json 2>"$tmp/bench.err"); then
    echo "bench/run.sh: $label failed: $(cat "$tmp/bench.err")" >&2
  fi
  [ -n "$out" ] && echo "$out" | jq -c --arg t "$label" '. + {test: $t}' >>"$results"
  echo "$out" | jq -r --arg t "$label" \
    'if .ok then "\($t): \(.delivered_pps // .conns_per_second // .server_bytes_per_conn | floor)" else "\($t): error: \(.error.message)" end' >&2 || true
}

load_args=(--duration "$duration" --warmup "$warmup" --threads "$bench_threads")
# load LABEL derp-bench-args...: a load run against the current relay, which also reports the
# relay's CPU (user+sys) per delivered packet.
load() {
  local label=$1
  shift
  run "$label" "$@" --server-pid "$serve_pid"
}

start_serve "$serve"
echo "bench/run.sh: derp-serve pid $serve_pid at $url" >&2
for pairs in 1 10 100; do
  for size in 64 1200 16000; do
    load "plain closed w32" "$url" --pairs "$pairs" --size "$size" --window 32 "${load_args[@]}"
    load "plain open max" "$url" --pairs "$pairs" --size "$size" --rate max "${load_args[@]}"
  done
done
# As Tailscale's Go client writes: one frame per write syscall (derp-bench --write-mode
# per-frame), the load operators' relays see.
for size in 64 1200; do
  load "plain per-frame w32" "$url" --pairs 10 --size "$size" --window 32 --write-mode per-frame \
    "${load_args[@]}"
done

# Ping RTT at half of the 10-pair 1200-byte closed-loop maximum.
max10=$(jq -r 'select(.test=="plain closed w32" and .pairs==10 and .size==1200) | .delivered_pps' \
  "$results" | head -1)
if [ -n "$max10" ] && [ "$max10" != "null" ]; then
  half=$(awk -v m="$max10" 'BEGIN { printf "%.0f", m / 2 / 10 }')
  load "plain ping @half" "$url" --pairs 10 --size 1200 --rate "$half" --ping-interval 10ms \
    "${load_args[@]}"
fi
load "plain ping idle" "$url" --pairs 1 --size 64 --rate 1 --ping-interval 10ms "${load_args[@]}"

# The machine's ceiling: the same frames through an in-process plain TCP forwarder.
for pairs in 1 10; do
  for size in 1200 16000; do
    run "raw closed w32" --raw --pairs "$pairs" --size "$size" --window 32 "${load_args[@]}"
  done
done

# The same overload with derper's queue policy (drop the oldest at once, no back-pressure):
# what --queue-wait changes.
start_serve "$serve" --queue-wait 0
load "open max, queue-wait 0" "$url" --pairs 10 --size 1200 --rate max "${load_args[@]}"

# Memory per idle connection, on a fresh relay (no buffers left from the load runs).
start_serve "$serve"
run "plain idle" "$url" --idle "$idle_conns" --server-pid "$serve_pid" --duration 2s
start_serve "$serve"
run "plain connect storm" "$url" --connect-storm "$storm_conns" --concurrency 64

# TLS: derp-serve's --certmode manual with an IP --hostname makes a self-signed certificate;
# derp-bench skips verification (--insecure) since only the cost of TLS is measured here.
tls_note="pending server TLS (derp-serve has no TLS listener yet)"
if "$serve" --help 2>/dev/null | grep -q -- '--certmode'; then
  tls_note=""
  tls=(--certmode manual --certdir "$tmp/certs" --hostname 127.0.0.1)
  mkdir -p "$tmp/certs"
  start_serve "$serve" "${tls[@]}"
  for pairs in 1 10 100; do
    for size in 64 1200 16000; do
      load "TLS closed w32" "$url" --insecure --pairs "$pairs" --size "$size" --window 32 \
        "${load_args[@]}"
    done
  done
  for size in 64 1200; do
    load "TLS per-frame w32" "$url" --insecure --pairs 10 --size "$size" --window 32 \
      --write-mode per-frame "${load_args[@]}"
  done
  load "TLS open max" "$url" --insecure --pairs 10 --size 1200 --rate max "${load_args[@]}"
  start_serve "$serve" "${tls[@]}"
  run "TLS idle" "$url" --insecure --idle "$idle_conns" --server-pid "$serve_pid" --duration 2s
fi

# WebSocket (WS=1): DERP in WebSocket binary messages to the relay's own WebSocket server
# (PROTOCOL.md §6.4; derp-bench --websocket): closed loop at 1 and 10 pairs, the 10-pair
# overload, idle connections; over TLS too when derp-serve has it.
if [ "$ws" = 1 ]; then
  start_serve "$serve"
  for pairs in 1 10; do
    for size in 64 1200 16000; do
      load "WS closed w32" "$url" --websocket --pairs "$pairs" --size "$size" --window 32 \
        "${load_args[@]}"
    done
  done
  load "WS open max" "$url" --websocket --pairs 10 --size 1200 --rate max "${load_args[@]}"
  start_serve "$serve"
  run "WS idle" "$url" --websocket --idle "$idle_conns" --server-pid "$serve_pid" --duration 2s
  if [ -z "$tls_note" ]; then
    start_serve "$serve" "${tls[@]}"
    for pairs in 1 10; do
      load "WSS closed w32" "$url" --websocket --insecure --pairs "$pairs" --size 1200 --window 32 \
        "${load_args[@]}"
    done
  fi
fi
stop_serve

# ---- The table.
printf '\n%s\n' "derp-bench matrix: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(date -u +%Y-%m-%d), duration $duration, derp-bench threads $bench_threads"
{
  echo "test|pairs|size|sent pkt/s|delivered pkt/s|Mbit/s|drop %|p50 ms|p99 ms|p99.9 ms|fair min/max|relay µs/pkt"
  jq -r 'select(.mode=="load" or .mode=="raw") | select(.ping_ms == null) |
    [.test, .pairs, .size, (.sent_pps|floor), (.delivered_pps|floor),
     (.delivered_mbps|floor), (.drop_pct*100|round/100), (.latency_ms.p50*1000|round/1000),
     (.latency_ms.p99*1000|round/1000), (.latency_ms.p999*1000|round/1000),
     (.fairness.min_max_ratio*100|round/100),
     (if .relay_cpu_us_per_packet == null then "-" else (.relay_cpu_us_per_packet*100|round/100) end)]
    | map(tostring) | join("|")' "$results"
  if [ -n "$tls_note" ]; then
    for l in "TLS closed w32" "TLS open max"; do echo "$l|1/10/100|64/1200/16000|$tls_note||||||||"; done
  fi
} | column -t -s '|'
echo
{
  echo "ping test|load pkt/s|ping p50 ms|p99 ms|p99.9 ms|pings"
  jq -r 'select(.ping_ms != null) |
    [.test, (.delivered_pps|floor), (.ping_ms.p50*1000|round/1000), (.ping_ms.p99*1000|round/1000),
     (.ping_ms.p999*1000|round/1000), .ping_ms.count] | map(tostring) | join("|")' "$results"
} | column -t -s '|'
echo
{
  echo "fleet test|connections|result"
  jq -r 'select(.mode=="idle") | [.test, .connections,
    "relay \(.server_bytes_per_conn|floor) B/conn (RSS \(.server_rss_before_kb) -> \(.server_rss_after_kb) kB), client \(.client_bytes_per_conn|floor) B/conn"] |
    map(tostring) | join("|")' "$results"
  [ -n "$tls_note" ] && echo "TLS idle|$idle_conns|$tls_note"
  jq -r 'select(.mode=="connect_storm") | [.test, .connections,
    "\(.conns_per_second|floor) conn/s, handshake p50 \(.handshake_ms.p50*1000|round/1000) ms p99 \(.handshake_ms.p99*1000|round/1000) ms, \(.failed) failed"] |
    map(tostring) | join("|")' "$results"
} | column -t -s '|'
