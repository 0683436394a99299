#!/usr/bin/env bash
# README.md's tool session, run as written: ctest test `docs.readme`.
#   readme_test.sh README BIN_DIR
# Takes the ```sh block after "<!-- readme-test: run -->", puts BIN_DIR first on PATH and runs
# it with bash -euo pipefail in an empty directory, with two changes only:
#   - the ports it names (3340-3342, 8443, 9100; UDP 3478, 3479) become free ephemeral ones;
#   - a command ending in " &" (a relay, a receiver) runs in the background, and the next
#     command starts only after its first "listening on" / "ready" line (what a person waits
#     for); a line marked "# readme-test: skip (why)" is printed, not run.
# Every other command must exit 0. At the end every background process gets SIGTERM and must
# exit 0 (derp-serve's clean shutdown) or have exited 0 already, last started first.
set -euo pipefail
readme=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
bin=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/derp-readme-test-XXXXXX)
cleanup() {
  pkill -TERM -P $$ 2>/dev/null || true
  for p in $(jobs -p); do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "readme_test: FAIL: $*" >&2; exit 1; }

block=$(awk '
  $0 == "<!-- readme-test: run -->" { found = 1; next }
  found && !inside && /^```sh$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }
' "$readme")
[ -n "$block" ] || fail "$readme has no \`\`\`sh block after <!-- readme-test: run -->"

# Free ports: bound with port 0 and released (TCP for the relays and metrics, UDP for STUN).
free_ports() {  # free_ports N tcp|udp
  python3 -c 'import socket, sys
kind = socket.SOCK_STREAM if sys.argv[2] == "tcp" else socket.SOCK_DGRAM
socks = [socket.socket(socket.AF_INET, kind) for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1" "$2"
}
read -r -a tcp_ports <<<"$(free_ports 5 tcp)"
read -r -a udp_ports <<<"$(free_ports 2 udp)"
subst=(-e "s/\b3340\b/${tcp_ports[0]}/g" -e "s/\b3341\b/${tcp_ports[1]}/g"
       -e "s/\b3342\b/${tcp_ports[2]}/g" -e "s/\b8443\b/${tcp_ports[3]}/g"
       -e "s/\b9100\b/${tcp_ports[4]}/g" -e "s/\b3478\b/${udp_ports[0]}/g"
       -e "s/\b3479\b/${udp_ports[1]}/g")

# The script: a prelude with the background helper, then the block line by line.
script=$tmp/session.sh
cat >"$script" <<'PRELUDE'
set -euo pipefail
__bg=0
__pids=()
# Waits (15 s at most per line) for the background command's "listening on"/"ready" line.
__wait_ready() {
  local fifo=$1 pid=$2 line
  exec {__fd}<"$fifo"
  while IFS= read -r -t 15 -u "$__fd" line; do
    echo "[bg $pid] $line"
    case "$line" in *"listening on"*|*ready*) cat <&"$__fd" >"$fifo.log" & return 0 ;; esac
  done
  echo "readme_test: FAIL: the background command (pid $pid) printed no listening/ready line" >&2
  exit 1
}
PRELUDE
n=0
command_re='^[a-z(]'
background_re='^[a-z].* &$'
while IFS= read -r line; do
  if [[ "$line" == *"# readme-test: skip"* ]]; then
    printf 'echo %q\n' "readme_test: skipped: ${line}" >>"$script"
  elif [[ "$line" =~ $background_re ]]; then
    n=$((n + 1))
    cmd=${line% &}
    {
      printf 'echo %q\n' "\$ $line"
      echo "mkfifo \"\$PWD/.bg$n\""
      echo "$cmd >\"\$PWD/.bg$n\" 2>&1 &"
      echo "__pids+=(\$!)"
      echo "__wait_ready \"\$PWD/.bg$n\" \$!"
    } >>"$script"
  elif [[ "$line" =~ $command_re ]] && [[ "$line" != *"<<"* ]]; then
    { printf 'echo %q\n' "\$ $line"; echo "$line"; } >>"$script"
  else
    echo "$line" >>"$script"
  fi
done < <(sed "${subst[@]}" <<<"$block")
cat >>"$script" <<'EPILOGUE'
__status=0
# Last started first: receivers stop before the relay they are connected to.
for ((__i = ${#__pids[@]} - 1; __i >= 0; __i--)); do
  p=${__pids[__i]}
  kill -TERM "$p" 2>/dev/null || true
  if ! wait "$p"; then echo "readme_test: FAIL: background pid $p exited non-zero" >&2; __status=1; fi
done
exit $__status
EPILOGUE

mkdir "$tmp/work"
cd "$tmp/work"
if ! PATH="$bin:$PATH" bash "$script"; then
  echo "--- the script as run:" >&2
  cat -n "$script" >&2
  fail "a README command failed (above)"
fi
echo "readme_test: ok: every README command ran as written"
