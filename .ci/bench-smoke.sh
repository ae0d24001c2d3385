#!/usr/bin/env bash
# The benchmark program cannot rot: it is built, and run at a tenth of its sizes (`--quick`) on
# SQLite and on PostgreSQL (scratch databases made through the admin URL given, or the local
# server's `postgres` database). A run must succeed and print no WARN or ERROR line: each
# benchmark stops its daemon before dropping its database, so teardown is silent.
set -euo pipefail
cd "$(dirname "$0")/.."
admin=${1:-postgres://postgres@${PGHOST:-127.0.0.1}:5432/postgres}
cargo build --release --bin mindo-bench --bin mindo-bulk # burst runs the daemon binary
log=$(mktemp)
trap 'rm -f "$log"' EXIT
target/release/mindo-bench --quick --postgres "$admin" 2>&1 | tee "$log"
if grep -E '(^|[^A-Za-z])(ERROR|WARN)([^A-Za-z]|$)' "$log" >/dev/null; then
  echo "bench-smoke: the benchmark run logged warnings or errors:" >&2
  grep -E '(^|[^A-Za-z])(ERROR|WARN)([^A-Za-z]|$)' "$log" | head -20 >&2
  exit 1
fi
