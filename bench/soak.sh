#!/usr/bin/env bash
# Soak: hours of mixed load against one derp-serve on 127.0.0.1, its resources sampled, and a
# verdict. Fails (exit 1) if the relay's RSS grows more than 5 % after warm-up, its fds or
# threads leak, any closed-loop packet is lost, or any load process fails.
#
# Usage: bench/soak.sh [MINUTES]          (default 30; fractions allowed: 0.34 = ~20 s)
# Load, all at once, for the whole run, against a TLS relay (self-signed, 127.0.0.1):
#   - a mesh peer         a second derp-serve linked to it (--mesh-with; a watcher and forwarder)
#   - closed-loop pairs   derp-bench --pairs 4 --window 8 (asserting lost==0 at the end)
#   - open-loop pairs     derp-bench --pairs 2 --rate 2000, over WebSocket
#   - churn               derp-bench --connect-storm 200 in a loop (connect, handshake, close)
#   - watchers            derp-watch (mesh key) following every connect and disconnect
#   - pings               derp-ping --count 5 in a loop
# Every SAMPLE seconds (default 10) a CSV row: time, RSS kB, fds, threads, and the relay's
# counters from its --metrics-addr. Then an SVG plot of RSS, fds and connections.
# Environment:
#   BUILD_DIR  directory with bin/derp-* (default: build-release, built Release when missing)
#   OUT_DIR    where soak.csv, soak.svg and the logs go (default: a new /tmp/derp-soak.XXXXXX)
#   SAMPLE     seconds between samples (default 10)
#   WARMUP     seconds before the RSS baseline is taken (default: a fifth of the run, 5..300)
#   RSS_TOLERANCE  allowed RSS growth after warm-up, % (default 5; ctest's 20-second run uses
#              10: its baseline is taken while the allocator is still growing its arenas)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
minutes=${1:-30}
build=${BUILD_DIR:-$root/build-release}
sample=${SAMPLE:-10}
rss_tolerance=${RSS_TOLERANCE:-5}
out=${OUT_DIR:-$(mktemp -d /tmp/derp-soak.XXXXXX)}
mkdir -p "$out"
for f in churn.json churn.err ping.json ping.err; do : >"$out/$f"; done  # appended to below

total=$(awk -v m="$minutes" 'BEGIN { s = int(m * 60 + 0.5); if (s < 10) s = 10; print s }')
warmup=${WARMUP:-$(awk -v t="$total" 'BEGIN { w = int(t / 5); if (w < 5) w = 5; if (w > 300) w = 300; print w }')}

if [ ! -x "$build/bin/derp-serve" ] || [ ! -x "$build/bin/derp-bench" ]; then
  echo "soak.sh: building the tools (Release) in $build" >&2
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDERP_BUILD_TESTS=OFF >/dev/null
  cmake --build "$build" -j 2 --target derp-serve derp-bench derp-ping derp-watch >/dev/null
fi
bin=$build/bin

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# Waits for a line matching a pattern in a file (a child's stdout), up to 20 s.
wait_line() {
  local file=$1 pattern=$2 i
  for i in $(seq 200); do
    if grep -q -- "$pattern" "$file" 2>/dev/null; then return 0; fi
    sleep 0.1  # polling the file, up to the deadline
  done
  echo "soak.sh: no '$pattern' in $file: $(tail -3 "$file" 2>/dev/null)" >&2
  return 1
}

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$out/mesh.key"
echo >> "$out/mesh.key"
chmod 600 "$out/mesh.key"

"$bin/derp-serve" -a 127.0.0.1:0 --stun=false -c "$out/a.key" --certmode manual \
  --certdir "$out/certs" --hostname 127.0.0.1 --http-port -1 --metrics-addr 127.0.0.1:0 \
  --mesh-psk-file "$out/mesh.key" >"$out/relay.out" 2>"$out/relay.err" &
relay=$!
pids+=("$relay")
wait_line "$out/relay.out" "listening on"
url=$(grep -o 'https://127\.0\.0\.1:[0-9]*' "$out/relay.out" | head -1)
metrics=$(grep -o 'metrics 127\.0\.0\.1:[0-9]*' "$out/relay.out" | head -1 | cut -d' ' -f2)
echo "soak.sh: relay $url (pid $relay), metrics $metrics, $total s, sample every $sample s, out $out"

# The peer trusts the relay's self-signed certificate through OpenSSL's SSL_CERT_FILE.
SSL_CERT_FILE="$out/certs/127.0.0.1.crt" \
  "$bin/derp-serve" -a 127.0.0.1:0 --stun=false -c "$out/b.key" --mesh-psk-file "$out/mesh.key" \
  --mesh-with "$url" >"$out/peer.out" 2>"$out/peer.err" &
pids+=($!)
wait_line "$out/peer.out" "listening on"

tls=(--insecure)
end=$(( $(date +%s) + total ))
load=()
"$bin/derp-bench" "$url" "${tls[@]}" --pairs 4 --window 8 --size 1200 --warmup 0s \
  --duration "$(( total - 2 ))s" --json --assert 'lost==0' >"$out/closed.json" 2>"$out/closed.err" &
load+=($!)
"$bin/derp-bench" "$url" "${tls[@]}" --websocket --pairs 2 --rate 2000 --size 400 --warmup 0s \
  --duration "$(( total - 2 ))s" --json >"$out/open.json" 2>"$out/open.err" &
load+=($!)
"$bin/derp-watch" "$url" "${tls[@]}" --mesh-psk-file "$out/mesh.key" --json \
  --timeout "$(( total - 1 ))s" >"$out/watch.json" 2>"$out/watch.err" &
watcher=$!
pids+=("${load[@]}" "$watcher")
(
  while [ "$(date +%s)" -lt $(( end - 5 )) ]; do
    "$bin/derp-bench" "$url" "${tls[@]}" --connect-storm 200 --concurrency 16 --json \
      >>"$out/churn.json" 2>>"$out/churn.err" || echo "churn run failed" >>"$out/churn.err"
  done
) &
churn=$!
(
  while [ "$(date +%s)" -lt $(( end - 5 )) ]; do
    "$bin/derp-ping" "$url" "${tls[@]}" --count 5 --json \
      >>"$out/ping.json" 2>>"$out/ping.err" || echo "ping run failed" >>"$out/ping.err"
  done
) &
pinger=$!
pids+=("$churn" "$pinger")

counters='derp_current_connections derp_packets_sent derp_packets_dropped derp_watchers'
echo "t_seconds,rss_kb,fds,threads,${counters// /,}" > "$out/soak.csv"
start=$(date +%s)
while :; do
  now=$(date +%s)
  t=$(( now - start ))
  rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$relay/status")
  fds=$(ls "/proc/$relay/fd" | wc -l)
  threads=$(ls "/proc/$relay/task" | wc -l)
  scrape=$(curl -s --max-time 5 "http://$metrics/metrics" || true)
  row="$t,$rss,$fds,$threads"
  for c in $counters; do
    row="$row,$(printf '%s\n' "$scrape" | awk -v n="$c" '$1 == n { v = $2 } END { print v + 0 }')"
  done
  echo "$row" >> "$out/soak.csv"
  [ "$t" -ge "$total" ] && break
  next=$(( sample < total - t ? sample : total - t ))
  [ "$next" -le 0 ] && next=1
  sleep "$next"  # the sampling period: the clock itself, not a wait for an event
done

fail=0
for p in "${load[@]}"; do
  if ! wait "$p"; then fail=1; fi
done
wait "$watcher" || true  # it ends at its --timeout (exit 0) or on our kill
wait "$churn" "$pinger" || true
lost=$(grep -o '"lost":[0-9]*' "$out/closed.json" | tail -1 | cut -d: -f2)
delivered=$(grep -o '"total_delivered":[0-9]*' "$out/closed.json" | tail -1 | cut -d: -f2)
churn_runs=$(grep -c '"ok":true' "$out/churn.json" 2>/dev/null || true)
churn_failed=$(grep -c 'failed' "$out/churn.err" 2>/dev/null || true)
pings=$(grep -c '"ok":true' "$out/ping.json" 2>/dev/null || true)
ping_failed=$(grep -c 'failed' "$out/ping.err" 2>/dev/null || true)

# Verdict from the CSV: RSS after warm-up vs its end, fds and threads at the end vs after warm-up.
verdict=$(awk -F, -v w="$warmup" 'NR > 1 {
    if (base_rss == "" && $1 >= w) { base_rss = $2; base_fds = $3; base_thr = $4 }
    last_rss = $2; last_fds = $3; last_thr = $4; if ($2 > peak) peak = $2 }
  END {
    if (base_rss == "") { base_rss = last_rss; base_fds = last_fds; base_thr = last_thr }
    growth = (last_rss - base_rss) * 100.0 / base_rss
    printf "%d %d %.2f %d %d %d %d %d\n", base_rss, last_rss, growth, peak, base_fds, last_fds, base_thr, last_thr
  }' "$out/soak.csv")
read -r base_rss last_rss growth peak base_fds last_fds base_thr last_thr <<<"$verdict"

# The plot: RSS (MB, left scale) and fds / connections (right scale) against time.
awk -F, -v title="derp-serve soak: $minutes min, sample ${sample}s" 'NR > 1 {
    n++; t[n] = $1; r[n] = $2 / 1024; f[n] = $3; c[n] = $5
    if (t[n] > tmax) tmax = t[n]; if (r[n] > rmax) rmax = r[n]
    if (f[n] > cmax) cmax = f[n]; if (c[n] > cmax) cmax = c[n] }
  END {
    W = 800; H = 400; L = 60; R = 60; T = 40; B = 40
    if (tmax == 0) tmax = 1; rmax = rmax * 1.2 + 1; cmax = cmax * 1.2 + 1
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"20\">%s</text>\n", L, title
    printf "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", L, T, W - L - R, H - T - B
    printf "<text x=\"5\" y=\"%d\" fill=\"#c00\">RSS %.0f MB</text>\n", T + 12, rmax
    printf "<text x=\"%d\" y=\"%d\" fill=\"#06c\" text-anchor=\"end\">fds/conns %d</text>\n", W - 2, T + 12, cmax
    printf "<text x=\"%d\" y=\"%d\">0 s</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d s</text>\n", L, H - 20, W - R, H - 20, tmax
    split("r f c", names, " "); split("#c00 #06c #0a0", colours, " ")
    for (k = 1; k <= 3; k++) {
      printf "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", colours[k]
      for (i = 1; i <= n; i++) {
        v = (k == 1) ? r[i] / rmax : ((k == 2) ? f[i] / cmax : c[i] / cmax)
        printf "%.1f,%.1f ", L + (W - L - R) * t[i] / tmax, H - B - (H - T - B) * v
      }
      printf "\"/>\n"
    }
    printf "<text x=\"%d\" y=\"%d\" fill=\"#c00\">RSS</text><text x=\"%d\" y=\"%d\" fill=\"#06c\">fds</text><text x=\"%d\" y=\"%d\" fill=\"#0a0\">connections</text>\n", L + 10, H - 5, L + 60, H - 5, L + 110, H - 5
    printf "</svg>\n"
  }' "$out/soak.csv" > "$out/soak.svg"

echo "soak.sh: ${total} s, $(( $(wc -l < "$out/soak.csv") - 1 )) samples; RSS ${base_rss} kB after ${warmup} s warm-up -> ${last_rss} kB at the end (${growth} %, peak ${peak} kB); fds ${base_fds} -> ${last_fds}; threads ${base_thr} -> ${last_thr}"
echo "soak.sh: closed loop delivered ${delivered:-?} lost ${lost:-?}; churn runs ${churn_runs} (failed ${churn_failed}); ping runs ${pings} (failed ${ping_failed}); csv $out/soak.csv, plot $out/soak.svg"
if [ "${lost:-x}" != 0 ]; then echo "soak.sh: FAIL closed-loop packets lost: ${lost:-no result} ($(tail -1 "$out/closed.err"))"; fail=1; fi
if awk -v g="$growth" -v m="$rss_tolerance" 'BEGIN { exit !(g > m) }'; then
  echo "soak.sh: FAIL RSS grew ${growth} % after warm-up (more than ${rss_tolerance} %)"; fail=1
fi
if ! grep -q "mesh link to $url up" "$out/peer.err"; then
  echo "soak.sh: FAIL the mesh peer never linked: $(tail -1 "$out/peer.err")"; fail=1
fi
# fds and threads: the load is the same at both samples, so they must not creep up (a few fds
# of slack for connections mid-handshake when the sample is taken).
if [ "$last_fds" -gt $(( base_fds + 16 )) ]; then echo "soak.sh: FAIL fds ${base_fds} -> ${last_fds}"; fail=1; fi
if [ "$last_thr" -gt "$base_thr" ]; then echo "soak.sh: FAIL threads ${base_thr} -> ${last_thr}"; fail=1; fi
if [ "$churn_failed" -gt 0 ] || [ "$ping_failed" -gt 0 ]; then echo "soak.sh: FAIL some churn or ping runs failed (see $out/*.err)"; fail=1; fi
if ! kill -0 "$relay" 2>/dev/null; then echo "soak.sh: FAIL the relay died: $(tail -2 "$out/relay.err")"; fail=1; fi
[ "$fail" = 0 ] && echo "soak.sh: PASS"
exit "$fail"
