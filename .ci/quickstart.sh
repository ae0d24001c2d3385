#!/usr/bin/env bash
# The README's quick start, as a new user runs it: `cargo run --release -- serve --sandbox` exactly as
# written (on a scratch SQLite database and a free port), then the `curl` it prints, then the send's status
# until it is COMPLETED with one message sent, then SIGTERM, which must end the daemon with status 0.
# A README command or a printed curl that no longer works fails CI here.
set -euo pipefail
cd "$(dirname "$0")/.."

# The first command of the README's quick start, read from the README itself.
command=$(grep -m1 -E '^cargo run .*serve --sandbox$' README.md) || {
  echo "quickstart: the README has no 'cargo run … serve --sandbox' line" >&2
  exit 1
}
[ "$command" = "cargo run --release -- serve --sandbox" ] || {
  echo "quickstart: the README's first command changed to: $command" >&2
  exit 1
}

scratch=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
out="$scratch/stdout"
log="$scratch/stderr"
daemon=""
cleanup() {
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then kill -KILL "$daemon" || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT
fail() {
  echo "quickstart: $*" >&2
  echo "--- daemon stdout" >&2; cat "$out" >&2 || true
  echo "--- daemon stderr (last 40 lines)" >&2; tail -n 40 "$log" >&2 || true
  exit 1
}

# Build first, so the timeouts below measure the daemon and not the compiler.
cargo build --release --quiet
export MINDO_BIND="127.0.0.1:$port" MINDO_DATABASE_URL="sqlite://$scratch/quickstart.db"
# `cargo run` execs the daemon on Unix: $! is the daemon itself.
$command >"$out" 2>"$log" &
daemon=$!

# The sandbox prints its key and the curl once it is ready.
for _ in $(seq 1 600); do
  grep -q '^curl ' "$out" 2>/dev/null && break
  kill -0 "$daemon" 2>/dev/null || fail "the daemon exited before it was ready"
  sleep 0.1
done
api_key=$(sed -n 's/.*API key: \(mindo_[A-Za-z0-9]*\).*/\1/p' "$out" | head -n 1)
[ -n "$api_key" ] || fail "no API key printed"
curl_command=$(sed -n '/^curl /,$p' "$out")
[ -n "$curl_command" ] || fail "no curl printed"

echo "== quickstart: running the printed curl"
answer=$(bash -c "$curl_command") || fail "the printed curl failed"
echo "$answer"
bulk_send_id=$(printf '%s' "$answer" | python3 -c 'import json, sys; print(json.load(sys.stdin)["bulk_send_id"])') \
  || fail "the printed curl did not answer a bulk_send_id: $answer"

status_url="http://127.0.0.1:$port/api/v1/meta-templates/bulk-sends/$bulk_send_id/"
status=""
for _ in $(seq 1 600); do
  body=$(curl -sf -H "X-API-Key: $api_key" "$status_url") || fail "the status endpoint failed"
  status=$(printf '%s' "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
  case "$status" in
    COMPLETED) break ;;
    PARTIAL | FAILED | CANCELLED) fail "the send ended $status: $body" ;;
  esac
  sleep 0.1
done
[ "$status" = COMPLETED ] || fail "the send is still $status after 60 s"
sent=$(printf '%s' "$body" | python3 -c 'import json, sys; print(json.load(sys.stdin)["sent_count"])')
[ "$sent" = 1 ] || fail "sent_count is $sent, not 1: $body"
echo "== quickstart: $bulk_send_id COMPLETED, sent_count 1"

kill -TERM "$daemon"
code=0
wait "$daemon" || code=$?
daemon=""
[ "$code" = 0 ] || fail "the daemon exited with status $code after SIGTERM"
echo "== quickstart: the daemon stopped cleanly on SIGTERM"
