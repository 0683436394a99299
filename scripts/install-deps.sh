#!/usr/bin/env bash
# Installs everything libderp's build needs (Debian 12); with --test also what the tests run
# against (real components, not mocks: lintian, systemd-analyze, man, bash/zsh for completions,
# headless Chromium for the status page).
# Idempotent: when every package is already present it prints nothing and exits 0.
set -euo pipefail

packages=(
  build-essential g++ cmake ninja-build ccache pkg-config
  libssl-dev libsodium-dev libcurl4-openssl-dev
  libcli11-dev libfmt-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  libboost1.81-dev
  python3 procps iproute2 curl
)
test_packages=(
  # install.packages: dpkg-shlibdeps, lintian, systemd-analyze verify
  dpkg-dev lintian systemd
  # tools_manual_test: renders the man pages, loads the bash and zsh completions
  man-db groff-base bash-completion zsh
  # docs.readme: the README's session uses openssl(1) for a pin and a mesh key
  openssl
  # status_page_browser_test: the status page in a real headless browser
  chromium
)
for arg in "$@"; do
  case "$arg" in
    --test) packages+=("${test_packages[@]}") ;;
    *) echo "install-deps: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

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
