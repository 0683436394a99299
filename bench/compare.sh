#!/usr/bin/env bash
# Two relays side by side in one run: builds derp-serve of two trees, then runs the same
# derp-bench rows against each in turn (OLD, NEW, OLD, NEW, ...), and prints per row the median
# delivered packets/s and the relay's CPU (user + system, /proc/PID/stat) per delivered packet,
# with NEW/OLD ratios. docs/BENCHMARKS.md records its output.
#
# Usage: bench/compare.sh OLD NEW
#   OLD, NEW   git revisions (a commit, branch or tag), or "." for the working tree as it is
# Environment:
#   ROUNDS      runs of each row per side, alternating (default 3; the median is reported)
#   DURATION    measured time per run (default 3s); WARMUP (default 500ms)
#   ROWS        which rows, comma-separated (default all): per-frame-64, per-frame-1200,
#               tls-per-frame-64, tls-per-frame-1200, batched-64, batched-1200, tls-batched-1200,
#               open-max-1200
#   PAIRS       sender/receiver pairs per row (default 10); SERVE_THREADS derp-serve loops
#               (default 0: one per core)
#   JSON_OUT    also keep every run's JSON line (with "side" and "row") in this file
# Both relays are loaded by the same derp-bench, NEW's (an older tree may lack --write-mode), so
# only the relay differs between the two columns. Builds go to build/compare/ (ccache is used
# when installed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if [ $# -ne 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -eq 2 ] && exit 0
  exit 2
fi
rounds=${ROUNDS:-3}
duration=${DURATION:-3s}
warmup=${WARMUP:-500ms}
pairs=${PAIRS:-10}
serve_threads=${SERVE_THREADS:-0}
rows=${ROWS:-per-frame-64,per-frame-1200,tls-per-frame-64,tls-per-frame-1200,batched-64,batched-1200,tls-batched-1200,open-max-1200}
case "$rounds" in ''|*[!0-9]*|0) echo "compare.sh: ROUNDS must be a whole number >= 1" >&2; exit 2 ;; esac
command -v jq >/dev/null || { echo "compare.sh: needs jq" >&2; exit 2; }

out_root=$root/build/compare
mkdir -p "$out_root"

# build REV: prints the build directory of REV's derp-serve and derp-bench (Release).
build_rev() {
  local rev=$1 src dir
  if [ "$rev" = . ]; then
    src=$root
    dir=$out_root/worktree
  else
    local sha
    sha=$(git rev-parse --verify --quiet "$rev^{commit}") ||
      { echo "compare.sh: '$rev' is not a git revision here" >&2; exit 2; }
    src=$out_root/src-${sha:0:12}
    dir=$out_root/build-${sha:0:12}
    if [ ! -f "$src/CMakeLists.txt" ]; then
      rm -rf "$src"; mkdir -p "$src"
      git archive "$sha" | tar -x -C "$src"
    fi
  fi
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    local generator=()
    command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
    cmake -S "$src" -B "$dir" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DDERP_BUILD_TESTS=OFF >/dev/null
  fi
  echo "compare.sh: building $rev in $dir" >&2
  cmake --build "$dir" -j "$(nproc)" --target derp-serve derp-bench >/dev/null
  echo "$dir"
}

old_dir=$(build_rev "$1")
new_dir=$(build_rev "$2")
bench=$new_dir/bin/derp-bench
"$bench" --help | grep -q -- --write-mode ||
  { echo "compare.sh: NEW's derp-bench has no --write-mode" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
tmp=$(mktemp -d)
results=$tmp/results.jsonl
: >"$results"
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
cleanup() {
  stop_serve
  if [ -n "${JSON_OUT:-}" ]; then cp "$results" "$JSON_OUT" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# row_args ROW: prints "tls|derp-bench args" for a row.
row_args() {
  case "$1" in
    per-frame-64) echo "0|--size 64 --window 32 --write-mode per-frame" ;;
    per-frame-1200) echo "0|--size 1200 --window 32 --write-mode per-frame" ;;
    tls-per-frame-64) echo "1|--size 64 --window 32 --write-mode per-frame" ;;
    tls-per-frame-1200) echo "1|--size 1200 --window 32 --write-mode per-frame" ;;
    batched-64) echo "0|--size 64 --window 32" ;;
    batched-1200) echo "0|--size 1200 --window 32" ;;
    tls-batched-1200) echo "1|--size 1200 --window 32" ;;
    open-max-1200) echo "0|--size 1200 --rate max" ;;
    *) echo "compare.sh: unknown row '$1' (see --help)" >&2; exit 2 ;;
  esac
}

IFS=, read -r -a row_list <<<"$rows"
for row in "${row_list[@]}"; do row_args "$row" >/dev/null; done
mkdir -p "$tmp/certs-old" "$tmp/certs-new"
for row in "${row_list[@]}"; do
  spec=$(row_args "$row")
  tls=${spec%%|*}
  read -r -a args <<<"${spec#*|}"
  for ((i = 1; i <= rounds; i++)); do
    for side in old new; do
      dir=$old_dir; [ "$side" = new ] && dir=$new_dir
      flags=(); extra=()
      if [ "$tls" = 1 ]; then
        flags=(--certmode manual --certdir "$tmp/certs-$side" --hostname 127.0.0.1)
        extra=(--insecure)
      fi
      start_serve "$dir/bin/derp-serve" "${flags[@]}"
      line=$("$bench" "$url" "${extra[@]}" --pairs "$pairs" "${args[@]}" --duration "$duration" \
        --warmup "$warmup" --server-pid "$serve_pid" --json 2>"$tmp/bench.err" || true)
      stop_serve
      if [ -z "$line" ] || [ "$(jq -r .ok <<<"$line")" != true ]; then
        echo "compare.sh: $row ($side, round $i) failed: $(cat "$tmp/bench.err")" >&2
        continue
      fi
      jq -c --arg s "$side" --arg r "$row" '. + {side: $s, row: $r}' <<<"$line" >>"$results"
      jq -r --arg s "$side" --arg r "$row" --arg i "$i" \
        '"\($r) \($s) #\($i): \(.delivered_pps|floor) pkt/s, \(.relay_cpu_us_per_packet*100|round/100) µs/pkt"' \
        <<<"$line" >&2
    done
  done
done

printf '\n%s\n' "bench/compare.sh $1 vs $2: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(date -u +%Y-%m-%d), $pairs pairs, $rounds rounds x $duration, medians"
{
  echo "row|OLD pkt/s|NEW pkt/s|NEW/OLD pkt/s|OLD relay µs/pkt|NEW relay µs/pkt|NEW/OLD CPU"
  jq -rs --argjson order "$(printf '%s\n' "${row_list[@]}" | jq -R . | jq -s .)" '
    def median: sort | if length == 0 then null
      elif length % 2 == 1 then .[length / 2 | floor]
      else (.[length / 2 - 1] + .[length / 2]) / 2 end;
    def r2: if . == null then "-" else (. * 100 | round / 100) end;
    . as $all | $order[] as $row |
    ($all | map(select(.row == $row and .side == "old"))) as $o |
    ($all | map(select(.row == $row and .side == "new"))) as $n |
    ($o | map(.delivered_pps) | median) as $op | ($n | map(.delivered_pps) | median) as $np |
    ($o | map(.relay_cpu_us_per_packet) | median) as $oc |
    ($n | map(.relay_cpu_us_per_packet) | median) as $nc |
    [$row, ($op // 0 | floor), ($np // 0 | floor),
     (if $op and $np then $np / $op | r2 else "-" end), ($oc | r2), ($nc | r2),
     (if $oc and $nc then $nc / $oc | r2 else "-" end)] | map(tostring) | join("|")' "$results"
} | column -t -s '|'
