#!/usr/bin/env bash
# README command 2: installs dependencies, builds everything with -Werror, runs every test with
# ctest, then does the same again in a separate AddressSanitizer + UBSan build.
# .ci/run calls exactly this script.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh
jobs=$(nproc)

echo "== build (RelWithDebInfo, -Werror) =="
bash scripts/build.sh "$root/build/test" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDERP_WERROR=ON
echo "== tests =="
ctest --test-dir "$root/build/test" -j "$jobs" --output-on-failure --timeout 300

echo "== build (address,undefined sanitizers) =="
bash scripts/build.sh "$root/build/asan" -DCMAKE_BUILD_TYPE=Debug -DDERP_WERROR=ON -DDERP_SANITIZE=ON
echo "== tests under sanitizers =="
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$root/build/asan" -j "$jobs" --output-on-failure --timeout 600
