#!/usr/bin/env bash
# A/B of botlink builds (or settings) at a fixed request rate, alternated, for changes smaller
# than the drift between two whole runs of run.sh on a shared machine.
#
# Each run starts a fresh `botlink serve` pinned to CPU 1 on a new SQLite database with LINKS
# one-channel Telegram links (as run.sh), warms up for 3 s, then loads `/l/{code}` at RATE
# req/s for DUR s from CPU 0 and prints the server's CPU time per request (all threads, and
# SQLite's threads), the p99 latency, and whether every 302 of the run and its warm-up became
# a click counted in the bot's statistics.
#
# Usage:  bench/redirect/ab.sh NAME=BINARY[,ENV=VALUE...] NAME=BINARY[,ENV=VALUE...] ...
# e.g.    bench/redirect/ab.sh old=/tmp/old/botlink new=target/release/botlink
#         bench/redirect/ab.sh b500=target/release/botlink,BOTLINK_CLICK_BATCH=500 \
#                              b2000=target/release/botlink,BOTLINK_CLICK_BATCH=2000
# Knobs:  RATE=25000 DUR=10 ROUNDS=3 LINKS=10000 VISITORS=0 (N: N distinct visitors)
#         A spec's BOTLINK_DATABASE_URL=postgres://USER@HOST:PORT/DB runs it on PostgreSQL instead: a
#         new database per run, created beside DB on that server and dropped after (needs psql;
#         the server's own CPU is not in the figures, only botlink's).
# Needs:  curl, jq, python3, taskset; the load generator: cargo build --release -p botlink-testkit
set -euo pipefail

RATE=${RATE:-25000}
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-3}
LINKS=${LINKS:-10000}
VISITORS=${VISITORS:-0}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOADGEN=${CARGO_TARGET_DIR:-$ROOT/target}/release/loadgen
KEY=blk_bench_admin_key_0123456789abcdefghij
# shellcheck source=bench/redirect/lib.sh
. "$ROOT/bench/redirect/lib.sh"
[ $# -ge 1 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
[ -x "$LOADGEN" ] || { echo "no load generator at $LOADGEN (cargo build --release -p botlink-testkit)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/botlink-ab.XXXXXX")
PID=
PG_DB=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2> /dev/null && wait "$PID" 2> /dev/null
    drop_pg
    rm -rf "$WORK"
}
trap cleanup EXIT

# drop_pg: drops the PostgreSQL database of the last run, if it made one.
drop_pg() {
    [ -n "$PG_DB" ] || return 0
    psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB" > /dev/null || true
    PG_DB=
}

# database_for NAME SPEC-ENV...: the database URL of a run: a new SQLite file; or, when the
# spec sets BOTLINK_DATABASE_URL=postgres://..., a new database on that server.
database_for() {
    local name=$1 kv url=
    shift
    for kv in "$@"; do
        case $kv in BOTLINK_DATABASE_URL=*) url=${kv#*=} ;; esac
    done
    if [ -z "$url" ]; then
        rm -f "$WORK/$name.db"*
        echo "sqlite://$WORK/$name.db"
        return
    fi
    PG_ADMIN=$url
    PG_DB=botlink_ab_$$_${name//[^a-zA-Z0-9_]/_}
    psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $PG_DB" -c "CREATE DATABASE $PG_DB" > /dev/null
    echo "${url%/*}/$PG_DB"
}

# one NAME BINARY [ENV=VALUE...]: one measured run.
one() {
    local name=$1 bin=$2
    shift 2
    local port url db
    port=$(free_port)
    url=http://127.0.0.1:$port
    db=$(database_for "$name" "$@")
    env -u RUST_LOG BOTLINK_ADMIN_KEY=$KEY BOTLINK_SECRET_KEY="$(printf '7%.0s' $(seq 64))" "$@" taskset -c 1 "$bin" serve --listen "127.0.0.1:$port" \
        --public-url "$url" --database-url "$db" --rate-limit 1000000 > "$WORK/$name.log" 2>&1 &
    PID=$!
    wait_http "$url/healthz"
    local bot
    bot=$(create_links "$url" "$KEY" "$LINKS" "$WORK/paths.txt")
    local args=(--addr "127.0.0.1:$port" --connections 64 --paths "$WORK/paths.txt" --rate "$RATE")
    [ "$VISITORS" != 0 ] && args+=(--visitors "$VISITORS")
    taskset -c 0 "$LOADGEN" "${args[@]}" --duration 3 > "$WORK/warm.txt"
    sleep 0.5
    local all0 sq0 all1 sq1
    all0=$(cpu_ticks "$PID")
    sq0=$(sqlite_ticks "$PID")
    taskset -c 0 "$LOADGEN" "${args[@]}" --duration "$DUR" > "$WORK/load.txt"
    sleep 0.3 # the last batch
    all1=$(cpu_ticks "$PID")
    sq1=$(sqlite_ticks "$PID")
    # Every 302 is a click: counted within a second or so (give it three).
    local answered counted i
    answered=$(cat "$WORK/warm.txt" "$WORK/load.txt" \
        | awk -F= '$1 == "responses" { n += $2 } $1 == "non_302" { n -= $2 } END { print n }')
    for i in $(seq 30); do
        counted=$(curl -fsS -H "Authorization: Bearer $KEY" "$url/api/v1/bots/$bot/stats" | jq .clicks)
        [ "$counted" -ge "$answered" ] && break
        sleep 0.1
    done
    kill "$PID"
    wait "$PID" 2> /dev/null || true
    PID=
    drop_pg
    awk -F= -v name="$name" -v all=$((all1 - all0)) -v sq=$((sq1 - sq0)) -v tck="$(getconf CLK_TCK)" \
        -v answered="$answered" -v counted="$counted" '
        { v[$1] = $2 }
        END {
            n = v["responses"]
            printf "%-10s %8d responses  CPU %6.2f µs/req (SQLite %5.2f)  p99 %6.2f ms  non-302 %d  clicks %d/%d counted\n",
                name, n, all * 1e6 / tck / n, sq * 1e6 / tck / n, v["p99_us"] / 1000, v["non_302"],
                counted, answered
        }' "$WORK/load.txt"
}

for r in $(seq "$ROUNDS"); do
    for spec in "$@"; do
        name=${spec%%=*}
        rest=${spec#*=}
        IFS=, read -r -a parts <<< "$rest"
        one "$name" "${parts[@]}"
    done
done
