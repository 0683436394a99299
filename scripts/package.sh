#!/usr/bin/env bash
# Builds the Debian packages libderp0, libderp-dev and derp-tools (packaging/cpack.cmake).
#
#   scripts/package.sh                   Release build in build/package, .debs in build/package/debs
#   scripts/package.sh --build-dir DIR   package an existing build (configured with
#                                        -DCMAKE_INSTALL_PREFIX=/usr, as scripts/test.sh does)
#   scripts/package.sh --out DIR         where the .debs go (default BUILD_DIR/debs)
#   scripts/package.sh --no-lintian      skip the lintian check
#
# Then lintian checks the packages (errors and warnings fail) when it is installed. Prints one
# line per package made. Install with `apt install ./build/package/debs/*.deb`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=""
out=""
lintian_check=1
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --no-lintian) lintian_check=0; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$build" ]; then
  bash "$root/scripts/install-deps.sh"
  build=$root/build/package
  bash "$root/scripts/build.sh" "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
    -DDERP_BUILD_TESTS=OFF -DCMAKE_UNITY_BUILD=ON >/dev/null
fi
build=$(cd "$build" && pwd)
[ -f "$build/CPackConfig.cmake" ] || { echo "package.sh: $build is not a configured build" >&2; exit 2; }
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
if [ "$prefix" != /usr ]; then
  echo "package.sh: $build was configured with CMAKE_INSTALL_PREFIX=$prefix; packages need /usr" >&2
  exit 2
fi
out=${out:-$build/debs}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.deb
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! (cd "$build" && cpack --config CPackConfig.cmake -B "$out/cpack") >"$log" 2>&1; then
  cat "$log" >&2
  echo "package.sh: cpack failed (output above)" >&2
  exit 1
fi
mv "$out"/cpack/*.deb "$out"/
rm -rf "$out/cpack"
for deb in "$out"/*.deb; do
  echo "package.sh: $deb"
done

if [ "$lintian_check" = 1 ]; then
  if command -v lintian >/dev/null 2>&1; then
    # Tags that do not fit a package built from upstream with CPack rather than a Debian source
    # package are listed, with the reason, in packaging/lintian-suppress.
    suppress=$( (grep -v '^#' "$root/packaging/lintian-suppress" || true) | cut -d' ' -f1 | paste -sd, -)
    args=(--fail-on error,warning)
    [ -n "$suppress" ] && args+=(--suppress-tags "$suppress")
    if ! lintian "${args[@]}" "$out"/*.deb; then
      echo "package.sh: lintian found problems (above)" >&2
      exit 1
    fi
    echo "package.sh: lintian: clean"
  else
    echo "package.sh: lintian not installed: packages not checked" >&2
  fi
fi
