#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz under AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
#   SECONDS   how long each target runs (default 600 = 10 minutes)
#   TARGET    only these targets (e.g. fuzz_stun); default every tests/fuzz/fuzz_*.cc
#
# Installs clang 14 and its runtime (Debian's clang-14, libclang-rt-14-dev), builds the targets
# in build/fuzz with -DDERP_FUZZ=ON, then runs them, FUZZ_PARALLEL at a time (default 1), each
# on one core, starting from tests/fuzz/corpus/<target>. New inputs are merged back into that
# corpus (-merge=1, so only inputs that add coverage are kept). A crash, leak, sanitizer report
# or timeout keeps its input as tests/fuzz/corpus/<target>/crash-<sha1> (the ctest replay then
# fails until the bug is fixed) and makes the script exit 1 after the remaining targets ran.
# One summary line per target: executions, exec/s, coverage (cov), features (ft), corpus size,
# findings. Logs: build/fuzz/logs/<target>.log.
#
# Environment: BUILD_DIR (default build/fuzz), FUZZ_PARALLEL (targets at once, default 1),
# RSS_LIMIT_MB (default 2048), FUZZ_TIMEOUT (seconds one input may take, default 10).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

seconds=600
targets=()
for arg in "$@"; do
  case "$arg" in
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    fuzz_*) targets+=("$arg") ;;
    *[!0-9]*|'') echo "fuzz.sh: '$arg' is neither a number of seconds nor a fuzz_* target (try --help)" >&2; exit 2 ;;
    *) seconds=$arg ;;
  esac
done
if [ "$seconds" -lt 1 ]; then
  echo "fuzz.sh: SECONDS must be at least 1 (got $seconds)" >&2; exit 2
fi

bash scripts/install-deps.sh
clang_packages=(clang-14 libclang-rt-14-dev)
missing=()
for p in "${clang_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "fuzz.sh: installing ${missing[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

build=${BUILD_DIR:-$root/build/fuzz}
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz_*.cc; do targets+=("$(basename "$src" .cc)"); done
fi
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/$t.cc" ] || { echo "fuzz.sh: no such target '$t' (tests/fuzz/$t.cc)" >&2; exit 2; }
done

echo "== build ${#targets[@]} fuzz targets (clang 14, ASan+UBSan, libFuzzer) in $build =="
generator=(); command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang-14 CXX=clang++-14 cmake -S "$root" -B "$build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDERP_FUZZ=ON -DCMAKE_UNITY_BUILD=ON \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g -fno-omit-frame-pointer" >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

mkdir -p "$build/logs" "$build/summary"
parallel=${FUZZ_PARALLEL:-1}
case "$parallel" in ''|*[!0-9]*|0) echo "fuzz.sh: FUZZ_PARALLEL must be a whole number >= 1 (got '$parallel')" >&2; exit 2 ;; esac

# One target: fuzz from the committed corpus into a scratch directory, merge what adds coverage
# back, keep every artifact as a corpus input, and write its summary line and finding count.
run_target() {
  local t=$1
  local corpus=tests/fuzz/corpus/$t work=$build/work/$t artifacts=$build/artifacts/$t
  local log=$build/logs/$t.log rc findings=0 a
  rm -rf "$work" "$artifacts"; mkdir -p "$corpus" "$work" "$artifacts"
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/tests/$t" -max_total_time="$seconds" \
      -rss_limit_mb="${RSS_LIMIT_MB:-2048}" -timeout="${FUZZ_TIMEOUT:-10}" \
      -artifact_prefix="$artifacts/" -print_final_stats=1 "$work" "$corpus" >"$log" 2>&1
  rc=$?
  set -e
  "$build/tests/$t" -merge=1 "$corpus" "$work" >>"$log" 2>&1 || true
  for a in "$artifacts"/*; do
    [ -e "$a" ] || continue
    findings=$((findings + 1))
    cp "$a" "$corpus/$(basename "$a")"
    echo "fuzz.sh: $t: finding kept as $corpus/$(basename "$a") (log: $log)" >&2
  done
  if [ "$rc" -ne 0 ] && [ "$findings" -eq 0 ]; then
    findings=1
    echo "fuzz.sh: $t: fuzzer exited $rc without an artifact (log: $log)" >&2
  fi
  local execs eps last cov ft size
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  eps=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$log" | grep -v 'INITED' | grep -E 'cov: ' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  size=$(find "$corpus" -type f | wc -l)
  printf '%-22s %12s %8s %7s %7s %7s %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}" "${ft:-?}" \
    "$size" "$findings" >"$build/summary/$t.txt"
  echo "$findings" >"$build/summary/$t.findings"
}

echo "== run ${#targets[@]} target(s) x ${seconds} s, ${parallel} at a time =="
for t in "${targets[@]}"; do
  rm -f "$build/summary/$t.txt" "$build/summary/$t.findings"
  while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  run_target "$t" &
done
wait
findings_total=0
printf '%-22s %12s %8s %7s %7s %7s %s\n' target execs exec/s cov ft corpus findings
for t in "${targets[@]}"; do
  if [ -f "$build/summary/$t.txt" ]; then
    cat "$build/summary/$t.txt"
    findings_total=$((findings_total + $(cat "$build/summary/$t.findings")))
  else
    printf '%-22s did not finish (log: %s)\n' "$t" "$build/logs/$t.log"
    findings_total=$((findings_total + 1))
  fi
done
if [ "$findings_total" -gt 0 ]; then
  echo "fuzz.sh: $findings_total finding(s); inputs kept in tests/fuzz/corpus/<target>/ (see above)" >&2
  exit 1
fi
echo "fuzz.sh: no findings in ${#targets[@]} target(s) x ${seconds} s"
