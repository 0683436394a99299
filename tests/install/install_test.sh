#!/usr/bin/env bash
# What a library consumer gets from `cmake --install`: run by ctest (test `install.prefix`).
#   install_test.sh BUILD_DIR SOURCE_DIR
# Installs BUILD_DIR into a fresh temporary prefix, checks the layout (headers only under
# include/derp, libderp.so with its SONAME, runpaths that point into the prefix), builds
# tests/install/consumer twice against the prefix only (CMake find_package and pkg-config),
# runs both programs, and runs an installed tool from the prefix. Nothing on any path points
# at the build tree: no LD_LIBRARY_PATH, CMAKE_PREFIX_PATH and PKG_CONFIG_PATH name the prefix.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/derp-install-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "install_test: FAIL: $*" >&2; exit 1; }
unset LD_LIBRARY_PATH CMAKE_PREFIX_PATH PKG_CONFIG_PATH

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }

# Layout. libdir is lib/ or Debian's lib/<multiarch>/, whichever the build chose.
lib=$(dirname "$(find "$prefix" -name 'libderp.so.0' | head -1)")
[ -n "$lib" ] && [ -L "$lib/libderp.so.0" ] || fail "no libderp.so.0 under $prefix"
[ -L "$lib/libderp.so" ] || fail "no libderp.so link (the dev component)"
soname=$(readelf -d "$lib/libderp.so.0" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libderp.so.0" ] || fail "SONAME is '$soname', want libderp.so.0"
real=$(readlink -f "$lib/libderp.so.0")
[[ "$(basename "$real")" =~ ^libderp\.so\.0\.[0-9]+\.[0-9]+$ ]] || fail "versioned file is $real"
[ "$(ls "$prefix/include")" = "derp" ] || fail "include/ holds more than derp/: $(ls "$prefix/include")"
[ -f "$prefix/include/derp/client.h" ] && [ -f "$prefix/include/derp/version.h" ] ||
  fail "headers missing under include/derp"
if find "$prefix/include" -type f ! -name '*.h' | grep -q .; then
  fail "non-header files under include/: $(find "$prefix/include" -type f ! -name '*.h')"
fi
for h in "$prefix"/include/derp/*.h; do
  # Every public header says what it is for in its first line, and pulls in nothing private.
  head -1 "$h" | grep -q '^// ' || fail "$h does not start with a comment saying what it is for"
  if grep -nE '#include [<"](boost|openssl|sodium|curl|fmt|nlohmann)' "$h"; then
    fail "$h includes a private dependency"
  fi
done
[ -f "$lib/cmake/libderp/libderpConfig.cmake" ] && [ -f "$lib/cmake/libderp/libderpConfigVersion.cmake" ] ||
  fail "no CMake package config under $lib/cmake/libderp"
[ -f "$lib/pkgconfig/libderp.pc" ] || fail "no $lib/pkgconfig/libderp.pc"
if grep -rl "$build" "$lib/cmake" "$lib/pkgconfig"; then fail "package files name the build tree"; fi
for tool in "$prefix"/bin/derp-*; do
  runpath=$(readelf -d "$tool" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
  case "$runpath" in
    *"$build"*) fail "$tool has the build tree in its runpath: $runpath" ;;
  esac
done
[ "$(ls "$prefix"/bin/derp-* | wc -l)" -eq 10 ] || fail "want 10 tools in bin/: $(ls "$prefix/bin")"
for tool in "$prefix"/bin/derp-*; do
  t=$(basename "$tool")
  [ -f "$prefix/share/man/man1/$t.1.gz" ] || fail "no man page share/man/man1/$t.1.gz"
  [ -f "$prefix/share/bash-completion/completions/$t" ] || fail "no bash completion for $t"
  [ -f "$prefix/share/zsh/vendor-completions/_$t" ] || fail "no zsh completion for $t"
done
# man finds an installed page through the prefix.
if command -v man >/dev/null 2>&1; then
  MANPATH="$prefix/share/man" man -w derp-ping | grep -q "^$prefix/share/man/man1/derp-ping.1.gz$" ||
    fail "man -w derp-ping does not find the prefix's page"
fi

# An installed tool runs from the prefix and loads the prefix's library.
out=$("$prefix/bin/derp-ping" --version) || fail "installed derp-ping --version exited $?"
[[ "$out" == "derp-ping "* ]] || fail "derp-ping --version printed '$out'"
# The library a binary loads, as a canonical path.
loaded_libderp() { readlink -f "$(ldd "$1" | sed -n 's/.*libderp\.so\.0 => \([^ ]*\) .*/\1/p')"; }
[ "$(loaded_libderp "$prefix/bin/derp-ping")" = "$(readlink -f "$lib/libderp.so.0")" ] ||
  fail "derp-ping does not load the prefix's libderp: $(ldd "$prefix/bin/derp-ping" | grep derp)"

# 1. CMake: find_package(libderp CONFIG) -> libderp::derp.
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S "$src/tests/install/consumer" -B "$tmp/cmake-consumer" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release >"$tmp/cmake.log" 2>&1 ||
  { cat "$tmp/cmake.log"; fail "configuring the CMake consumer"; }
cmake --build "$tmp/cmake-consumer" >"$tmp/cmake-build.log" 2>&1 ||
  { cat "$tmp/cmake-build.log"; fail "building the CMake consumer"; }
"$tmp/cmake-consumer/quickstart" >"$tmp/cmake-run.out" 2>&1 ||
  { cat "$tmp/cmake-run.out"; fail "the CMake consumer exited $?"; }
grep -qx ok "$tmp/cmake-run.out" || fail "CMake consumer: $(cat "$tmp/cmake-run.out")"
[ "$(loaded_libderp "$tmp/cmake-consumer/quickstart")" = "$(readlink -f "$lib/libderp.so.0")" ] ||
  fail "the CMake consumer does not load the prefix's libderp"

# 2. pkg-config --cflags --libs libderp, and the library found through the .pc's libdir.
export PKG_CONFIG_PATH="$lib/pkgconfig"
[ "$(pkg-config --modversion libderp)" = "$(sed -n 's/^#define DERP_VERSION "\(.*\)"/\1/p' "$prefix/include/derp/version.h")" ] ||
  fail "pkg-config --modversion libderp disagrees with derp/version.h"
libdir=$(pkg-config --variable=libdir libderp)
# shellcheck disable=SC2046
c++ -std=c++20 -O1 "$src/tests/install/consumer/quickstart.cc" -o "$tmp/pc-quickstart" \
  $(pkg-config --cflags --libs libderp) -Wl,-rpath,"$libdir" 2>"$tmp/pc-build.log" ||
  { cat "$tmp/pc-build.log"; fail "building the pkg-config consumer"; }
"$tmp/pc-quickstart" >"$tmp/pc-run.out" 2>&1 || { cat "$tmp/pc-run.out"; fail "the pkg-config consumer exited $?"; }
grep -qx ok "$tmp/pc-run.out" || fail "pkg-config consumer: $(cat "$tmp/pc-run.out")"
cat "$tmp/pc-run.out"
echo "install_test: ok: $prefix had headers, libderp.so.0, CMake config, libderp.pc and 10 tools"
