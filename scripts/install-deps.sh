#!/usr/bin/env bash
# Installs everything libderp's build, tests and benchmarks need (Debian 12).
# Idempotent: when every package is already present it prints nothing and exits 0.
set -euo pipefail

packages=(
  build-essential g++ cmake ninja-build ccache pkg-config
  libssl-dev libsodium-dev libcurl4-openssl-dev
  libcli11-dev libfmt-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  libboost1.81-dev
  python3 procps iproute2 curl
  chromium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  cat "$log" >&2
  echo "install-deps: apt-get failed (output above)" >&2
  rm -f "$log"
  exit 1
fi
rm -f "$log"
