#!/usr/bin/env bash
# First clicks: N links clicked once each, as per-customer links are (a CRM makes one link per
# customer, and each is clicked once or twice): every redirect finds its link outside the link
# cache. Measures whether botlink keeps up with a fixed rate of them, its CPU time per
# redirect, its latency, its memory after as many links have been cached, and whether every
# click was counted.
#
# One `botlink serve` pinned to CPU 1 on a new database with N + WARM one-channel Telegram
# links; the load generator on CPU 0 warms up for 1 s on the WARM extra links, then asks for
# each of the N links once, at RATE req/s.
#
# Usage:  bench/redirect/first-clicks.sh [BOTLINK_BINARY]    (default: the release build)
# Knobs:  N=100000 RATE=5000 WARM=5000
#         DATABASE_URL=postgres://USER@HOST:PORT/DB runs it on PostgreSQL: a new database beside
#         DB on that server, dropped after (needs psql; the server's own CPU is not counted)
# Needs:  cargo, curl, jq, python3, taskset
set -euo pipefail

N=${N:-100000}
RATE=${RATE:-5000}
WARM=${WARM:-5000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KEY=blk_bench_admin_key_0123456789abcdefghij
TCK=$(getconf CLK_TCK)
# shellcheck source=bench/redirect/lib.sh
. "$ROOT/bench/redirect/lib.sh"

if [ $# -ge 1 ]; then
    BIN=$1
else
    (cd "$ROOT" && cargo build --release --quiet -p botlink-server -p botlink-testkit \
        --bin botlink --bin loadgen)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/botlink
fi
LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen
[ -x "$LOADGEN" ] || { echo "no load generator at $LOADGEN (cargo build --release -p botlink-testkit)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/botlink-first-clicks.XXXXXX")
PID=
PG_DB=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2> /dev/null && wait "$PID" 2> /dev/null
    [ -n "$PG_DB" ] && psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $PG_DB" > /dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

db=sqlite://$WORK/botlink.db
if [ -n "${DATABASE_URL:-}" ]; then
    PG_DB=botlink_first_clicks_$$
    psql -q "$DATABASE_URL" -c "CREATE DATABASE $PG_DB" > /dev/null
    db=${DATABASE_URL%/*}/$PG_DB
fi
port=$(free_port)
url=http://127.0.0.1:$port
env -u RUST_LOG BOTLINK_ADMIN_KEY=$KEY BOTLINK_SECRET_KEY="$(printf '7%.0s' $(seq 64))" \
    taskset -c 1 "$BIN" serve --listen "127.0.0.1:$port" --public-url "$url" --database-url "$db" \
    --rate-limit 1000000 > "$WORK/server.log" 2>&1 &
PID=$!
wait_http "$url/healthz"
echo "[$(date +%T)] creating $((N + WARM)) links..." >&2
bot=$(create_links "$url" "$KEY" $((N + WARM)) "$WORK/all.txt")
head -n "$N" "$WORK/all.txt" > "$WORK/first.txt"
tail -n "$WARM" "$WORK/all.txt" > "$WORK/warm.txt"
rss() { awk -v k="$1:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$PID/status"; }
rss_setup=$(rss VmRSS)

args=(--addr "127.0.0.1:$port" --connections 64 --rate "$RATE")
taskset -c 0 "$LOADGEN" "${args[@]}" --paths "$WORK/warm.txt" --duration 1 > "$WORK/warm-load.txt"
sleep 0.5
cpu0=$(cpu_ticks "$PID")
sq0=$(sqlite_ticks "$PID")
duration=$(( (N + RATE - 1) / RATE ))
echo "[$(date +%T)] $N first clicks at $RATE req/s ($duration s)..." >&2
taskset -c 0 "$LOADGEN" "${args[@]}" --paths "$WORK/first.txt" --duration "$duration" > "$WORK/load.txt"
sleep 0.3
cpu1=$(cpu_ticks "$PID")
sq1=$(sqlite_ticks "$PID")

answered=$(cat "$WORK/warm-load.txt" "$WORK/load.txt" \
    | awk -F= '$1 == "responses" { n += $2 } $1 == "non_302" { n -= $2 } END { print n }')
for _ in $(seq 30); do
    counted=$(curl -fsS -H "Authorization: Bearer $KEY" "$url/api/v1/bots/$bot/stats" | jq .clicks)
    [ "$counted" -ge "$answered" ] && break
    sleep 0.1
done

# SQLite: the database's size on disk with its WAL, links and clicks together.
db_mb=
[ -z "$PG_DB" ] && db_mb=$(du -cm "$WORK"/botlink.db* | awk 'END { print $1 }')

awk -F= -v n="$N" -v rate="$RATE" -v cpu=$((cpu1 - cpu0)) -v sq=$((sq1 - sq0)) -v tck="$TCK" \
    -v setup="$rss_setup" -v after="$(rss VmRSS)" -v hwm="$(rss VmHWM)" \
    -v answered="$answered" -v counted="$counted" -v db="${db%%:*}" -v db_mb="$db_mb" '
    { v[$1] = $2 }
    END {
        r = v["responses"]
        printf "%d first clicks at %d req/s on %s: %d answered (%.1f%%), non-302 %d, errors %d\n",
            n, rate, db, r, 100 * r / n, v["non_302"], v["errors"]
        printf "CPU %.1f µs/redirect (SQLite threads %.1f), p99 %.2f ms, p50 %.2f ms\n",
            cpu * 1e6 / tck / r, sq * 1e6 / tck / r, v["p99_us"] / 1000, v["p50_us"] / 1000
        printf "RSS %d MB after setup, %d MB after (peak %d MB)\n", setup, after, hwm
        printf "clicks counted %d of %d answered\n", counted, answered
        if (db_mb != "") printf "SQLite file with its WAL: %d MB\n", db_mb
    }' "$WORK/load.txt"
