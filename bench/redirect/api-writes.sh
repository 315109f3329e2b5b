#!/usr/bin/env bash
# API write latency while redirects load the server: what a CRM creating links feels while a
# campaign's clicks pour in (SQLite, the embedded default, where API writes and the click
# writer share one database file and its write lock).
#
# One `botlink serve` pinned to CPU 1 on a new SQLite database with LINKS one-channel links.
# Each round writes links through the API (POST /api/v1/links, WRATE a second for DUR s, one
# keep-alive connection) twice: once with the server otherwise idle (the baseline, measured
# in the same run), once while the load generator sends RATE redirects a second from CPU 0.
# Prints each round's p50, p99 and max write latency, idle and loaded, and the loaded/idle
# ratio of the p99s; failed writes must be zero.
#
# Usage:  bench/redirect/api-writes.sh [BINARY]      (default target/release/botlink)
# Knobs:  RATE=50000 (about half of botlink's peak on the machines it ran on; see BENCHMARKS.md)
#         WRATE=20 DUR=10 ROUNDS=3 LINKS=10000
# Needs:  curl, jq, python3, taskset; cargo build --release -p botlink-server -p botlink-testkit
set -euo pipefail

RATE=${RATE:-50000}
WRATE=${WRATE:-20}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
LINKS=${LINKS:-10000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
BIN=${1:-$TARGET/botlink}
LOADGEN=$TARGET/loadgen
KEY=blk_bench_admin_key_0123456789abcdefghij
# shellcheck source=bench/redirect/lib.sh
. "$ROOT/bench/redirect/lib.sh"
for x in "$BIN" "$LOADGEN"; do
    [ -x "$x" ] || { echo "no $x: cargo build --release -p botlink-server -p botlink-testkit" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/botlink-apiw.XXXXXX")
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2> /dev/null && wait "$PID" 2> /dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

port=$(free_port)
url=http://127.0.0.1:$port
env -u RUST_LOG BOTLINK_ADMIN_KEY=$KEY BOTLINK_SECRET_KEY="$(printf '7%.0s' $(seq 64))" \
    taskset -c 1 "$BIN" serve --listen "127.0.0.1:$port" --public-url "$url" \
    --database-url "sqlite://$WORK/botlink.db" --rate-limit 1000000 > "$WORK/serve.log" 2>&1 &
PID=$!
wait_http "$url/healthz"
bot=$(create_links "$url" "$KEY" "$LINKS" "$WORK/paths.txt")
load=(--addr "127.0.0.1:$port" --connections 64 --paths "$WORK/paths.txt" --rate "$RATE")
taskset -c 0 "$LOADGEN" "${load[@]}" --duration 3 > /dev/null # warm the link cache

writes() { taskset -c 0 python3 "$ROOT/bench/redirect/api-writes.py" "$url" "$KEY" "$bot" "$WRATE" "$DUR"; }
field() { sed -E "s/.*$1=([^ ]+).*/\\1/" <<< "$2"; }

echo "API writes (POST /api/v1/links) at $WRATE/s for $DUR s; redirects at $RATE/s when loaded"
printf '%-6s %-7s %8s %8s %8s %8s %8s\n' round load writes errors p50_ms p99_ms max_ms
ratios=()
for r in $(seq "$ROUNDS"); do
    idle=$(writes)
    taskset -c 0 "$LOADGEN" "${load[@]}" --duration $((DUR + 2)) > "$WORK/load.txt" &
    lg=$!
    sleep 1
    loaded=$(writes)
    wait "$lg"
    for pair in "idle:$idle" "loaded:$loaded"; do
        l=${pair#*:}
        printf '%-6s %-7s %8s %8s %8s %8s %8s\n' "$r" "${pair%%:*}" "$(field count "$l")" \
            "$(field errors "$l")" "$(field p50_ms "$l")" "$(field p99_ms "$l")" "$(field max_ms "$l")"
    done
    non302=$(awk -F= '$1 == "non_302" { print $2 }' "$WORK/load.txt")
    [ "$non302" = 0 ] || echo "  (the redirect load had $non302 answers other than 302)"
    ratios+=("$(python3 -c "print(f'{$(field p99_ms "$loaded")/$(field p99_ms "$idle"):.2f}')")")
done
echo "p99 loaded/idle by round: ${ratios[*]}"
