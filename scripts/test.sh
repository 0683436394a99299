#!/usr/bin/env bash
# README command 2: installs dependencies, builds everything with -Werror and runs every test
# with ctest. .ci/run calls exactly this script.
#
#   scripts/test.sh              the CI run: one optimised build (-O2, line-table debug info)
#   scripts/test.sh --sanitize   then the same tests again in an AddressSanitizer + UBSan build
#   scripts/test.sh --tsan       then the unit and integration tests (relay, client, mesh, bench,
#                                tools) in a ThreadSanitizer build; any report fails the run
#
# Both builds are unity builds (several .cc files per compiler run): on 2 cores a fresh build
# takes about half the time. The sanitizer half doubles the run, which is why CI (30-minute
# budget) runs without it; engineers run it before each submission (docs/ARCHITECTURE.md, Tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

sanitize=0
tsan=0
for arg in "$@"; do
  case "$arg" in
    --sanitize) sanitize=1 ;;
    --tsan) tsan=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test.sh: unknown argument '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

bash scripts/install-deps.sh --test
jobs=$(nproc)
start=$(date +%s)

echo "== build (RelWithDebInfo -O2 -g1, -Werror, unity) =="
# Prefix /usr: Debian's layout (lib/<multiarch>, /etc, /lib/systemd), which the packaging
# test packs from this same build; the install test installs it under a temporary prefix.
bash scripts/build.sh "$root/build/test" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDERP_WERROR=ON \
  -DCMAKE_UNITY_BUILD=ON "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" \
  -DCMAKE_INSTALL_PREFIX=/usr
echo "== tests ($(( $(date +%s) - start )) s so far) =="
ctest --test-dir "$root/build/test" -j "$jobs" --output-on-failure --timeout 300

if [ "$sanitize" = 1 ]; then
  echo "== build (address,undefined sanitizers, unity) =="
  bash scripts/build.sh "$root/build/asan" -DCMAKE_BUILD_TYPE=Debug -DDERP_WERROR=ON \
    -DDERP_SANITIZE=ON -DCMAKE_UNITY_BUILD=ON -DCMAKE_INSTALL_PREFIX=/usr
  echo "== tests under sanitizers =="
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$root/build/asan" -j "$jobs" --output-on-failure --timeout 600
fi
if [ "$tsan" = 1 ]; then
  echo "== build (thread sanitizer, unity) =="
  bash scripts/build.sh "$root/build/tsan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDERP_WERROR=ON \
    -DDERP_TSAN=ON -DCMAKE_UNITY_BUILD=ON "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g"
  echo "== unit and integration tests under ThreadSanitizer =="
  # halt_on_error: the first report fails its test (tools run as children report the same
  # way: their exit code 66 fails the test that ran them). The suppressions file explains each
  # entry. The browser and the completion/man-page tests run no threads of ours.
  TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 suppressions=$root/tests/tsan.supp" \
    ctest --test-dir "$root/build/tsan" -j "$jobs" --output-on-failure --timeout 900 \
      -L 'unit|integration' -E 'StatusPageBrowser|BashCompletion|ZshCompletion|ToolsManual'
fi
echo "== all tests passed in $(( $(date +%s) - start )) s (after dependencies) =="
