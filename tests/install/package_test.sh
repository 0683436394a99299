#!/usr/bin/env bash
# The Debian packages, made from this build as a user makes them (scripts/package.sh, lintian
# included when it is installed) and unpacked into a scratch root: run by ctest (test
# `install.packages`).
#   package_test.sh BUILD_DIR SOURCE_DIR
# Checks each package's name, dependencies and contents, runs a tool from the scratch root,
# and has systemd-analyze verify the unit derp-tools installs. Exit 77 (ctest: skipped) when
# the build's prefix is not /usr or dpkg-deb is missing, saying so.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
fail() { echo "package_test: FAIL: $*" >&2; exit 1; }
skip() { echo "package_test: SKIPPED: $*"; exit 77; }
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
[ "$prefix" = /usr ] || skip "this build's CMAKE_INSTALL_PREFIX is $prefix; packages need /usr (scripts/test.sh configures it)"
command -v dpkg-deb >/dev/null || skip "dpkg-deb not installed"
tmp=$(mktemp -d /tmp/derp-package-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

bash "$src/scripts/package.sh" --build-dir "$build" --out "$tmp/debs" >"$tmp/package.log" 2>&1 ||
  { cat "$tmp/package.log"; fail "scripts/package.sh"; }
cat "$tmp/package.log"
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
arch=$(dpkg --print-architecture)
for p in libderp0 libderp-dev derp-tools; do
  [ -f "$tmp/debs/${p}_${version}-1_${arch}.deb" ] || fail "no ${p}_${version}-1_${arch}.deb in $(ls "$tmp/debs")"
done
field() { dpkg-deb -f "$tmp/debs/${1}_${version}-1_${arch}.deb" "$2"; }
field libderp0 Depends | grep -q 'libssl3' || fail "libderp0 does not depend on libssl3: $(field libderp0 Depends)"
field libderp0 Depends | grep -q 'libsodium' || fail "libderp0 does not depend on libsodium: $(field libderp0 Depends)"
field libderp-dev Depends | grep -q "libderp0 (= ${version}" || fail "libderp-dev Depends: $(field libderp-dev Depends)"
field derp-tools Depends | grep -q "libderp0 (= ${version}" || fail "derp-tools Depends: $(field derp-tools Depends)"
contents() { dpkg-deb -c "$tmp/debs/${1}_${version}-1_${arch}.deb" | awk '{print $6}'; }
contents libderp0 | grep -q '/libderp\.so\.0$' || fail "libderp0 lacks libderp.so.0"
if contents libderp0 | grep -qE '/include/|/bin/'; then fail "libderp0 holds headers or tools"; fi
contents libderp-dev | grep -q '/usr/include/derp/client\.h$' || fail "libderp-dev lacks the headers"
contents libderp-dev | grep -q '/pkgconfig/libderp\.pc$' || fail "libderp-dev lacks libderp.pc"
contents libderp-dev | grep -q '/cmake/libderp/libderpConfig\.cmake$' || fail "libderp-dev lacks the CMake config"
for t in serve connect send recv ping watch probe captive keygen bench; do
  contents derp-tools | grep -q "/usr/bin/derp-$t\$" || fail "derp-tools lacks derp-$t"
  contents derp-tools | grep -q "/usr/share/man/man1/derp-$t\.1\.gz\$" || fail "derp-tools lacks derp-$t.1.gz"
  contents derp-tools | grep -q "/usr/share/bash-completion/completions/derp-$t\$" ||
    fail "derp-tools lacks derp-$t's bash completion"
  contents derp-tools | grep -q "/usr/share/zsh/vendor-completions/_derp-$t\$" ||
    fail "derp-tools lacks derp-$t's zsh completion"
done
contents derp-tools | grep -q '/lib/systemd/system/derp-serve\.service$' || fail "derp-tools lacks derp-serve.service"
contents derp-tools | grep -q '^\./etc/default/derp-serve$' || fail "derp-tools lacks /etc/default/derp-serve"
dpkg-deb -e "$tmp/debs/derp-tools_${version}-1_${arch}.deb" "$tmp/control"
grep -qx /etc/default/derp-serve "$tmp/control/conffiles" || fail "/etc/default/derp-serve is not a conffile"

# dpkg -x into a scratch root: a tool runs from there, loading the scratch root's library
# through its relative runpath (no LD_LIBRARY_PATH).
root=$tmp/root
for deb in "$tmp"/debs/*.deb; do dpkg -x "$deb" "$root"; done
unset LD_LIBRARY_PATH
out=$("$root/usr/bin/derp-keygen" --version) || fail "derp-keygen from the scratch root exited $?"
[ "$out" = "derp-keygen $version" ] || fail "derp-keygen --version printed '$out'"
loaded=$(readlink -f "$(ldd "$root/usr/bin/derp-ping" | sed -n 's/.*libderp\.so\.0 => \([^ ]*\) .*/\1/p')")
[[ "$loaded" == "$root/usr/lib/"* ]] ||
  fail "derp-ping from the scratch root loads another libderp: $(ldd "$root/usr/bin/derp-ping" | grep derp)"
"$root/usr/bin/derp-keygen" >/dev/null || fail "derp-keygen from the scratch root"

# The unit as systemd reads it, with the scratch root's derp-serve in place of /usr/bin's.
if command -v systemd-analyze >/dev/null 2>&1; then
  unit=$tmp/unit/derp-serve.service
  mkdir -p "$tmp/unit"
  sed "s|^ExecStart=/usr/bin/derp-serve|ExecStart=$root/usr/bin/derp-serve|" \
    "$root/lib/systemd/system/derp-serve.service" >"$unit"
  grep -q "^ExecStart=$root/usr/bin/derp-serve " "$unit" || fail "unexpected ExecStart in the unit"
  # The hardening the unit promises (docs/CLI.md, derp-serve as a systemd service).
  for want in DynamicUser=yes StateDirectory=derp AmbientCapabilities=CAP_NET_BIND_SERVICE \
              CapabilityBoundingSet=CAP_NET_BIND_SERVICE ProtectSystem=strict ProtectHome=yes \
              NoNewPrivileges=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
              SystemCallFilter=@system-service Restart=on-failure \
              "ExecReload=/bin/kill -HUP \$MAINPID" EnvironmentFile=-/etc/default/derp-serve; do
    grep -qxF "$want" "$unit" || fail "the unit lacks '$want'"
  done
  # MANPATH: verify checks that Documentation=man:derp-serve(1) exists, in the scratch root.
  if ! MANPATH="$root/usr/share/man" SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$unit" >"$tmp/verify.log" 2>&1 ||
     grep -v -e '^$' "$tmp/verify.log" | grep -q .; then
    cat "$tmp/verify.log"
    fail "systemd-analyze verify derp-serve.service"
  fi
  echo "package_test: systemd-analyze verify: clean"
else
  skip "all else passed, but systemd-analyze is not installed (scripts/install-deps.sh --test installs systemd): the unit is not verified"
fi
echo "package_test: ok: libderp0, libderp-dev and derp-tools $version"
