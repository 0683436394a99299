# Shared by bench/run.sh and bench/compare.sh (sourced): one derp-serve at a time on 127.0.0.1
# with an ephemeral port. Needs $tmp (a scratch directory) and $serve_threads.

serve_pid=""

# start_serve SERVE_BINARY [derp-serve flags...]: stops the previous relay, starts a fresh one,
# and sets serve_pid and url from its documented "listening on" line (up to 20 s).
start_serve() {
  local serve=$1 _
  shift
  stop_serve
  : >"$tmp/serve.out"
  "$serve" -a 127.0.0.1:0 --stun=false --threads "$serve_threads" -c "$tmp/derper.key" "$@" \
    >"$tmp/serve.out" 2>"$tmp/serve.err" &
  serve_pid=$!
  url=""
  for _ in $(seq 1 200); do
    url=$(sed -n 's/^derp-serve: listening on \(http[^ ]*\) .*/\1/p' "$tmp/serve.out")
    [ -n "$url" ] && return 0
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.1  # polling the relay's stdout for its first line
  done
  echo "$(basename "$0"): derp-serve ($serve) did not start: $(cat "$tmp/serve.err")" >&2
  exit 1
}

stop_serve() {
  if [ -n "$serve_pid" ]; then
    kill "$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
    serve_pid=""
  fi
}
