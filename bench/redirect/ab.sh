#!/usr/bin/env bash
# A/B of botlink builds (or settings) at a fixed request rate, alternated, for changes smaller
# than the drift between two whole runs of run.sh on a shared machine.
#
# Each run starts a fresh `botlink serve` pinned to CPU 1 on a new SQLite database with LINKS
# one-channel Telegram links (as run.sh), warms up for 3 s, then loads `/l/{code}` at RATE
# req/s for DUR s from CPU 0 and prints the server's CPU time per request (all threads, and
# SQLite's threads) and the p99 latency.
#
# Usage:  bench/redirect/ab.sh NAME=BINARY[,ENV=VALUE...] NAME=BINARY[,ENV=VALUE...] ...
# e.g.    bench/redirect/ab.sh old=/tmp/old/botlink new=target/release/botlink
#         bench/redirect/ab.sh b500=target/release/botlink,BOTLINK_CLICK_BATCH=500 \
#                              b2000=target/release/botlink,BOTLINK_CLICK_BATCH=2000
# Knobs:  RATE=25000 DUR=10 ROUNDS=3 LINKS=10000 VISITORS=0 (N: N distinct visitors)
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
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2> /dev/null && wait "$PID" 2> /dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# one NAME BINARY [ENV=VALUE...]: one measured run.
one() {
    local name=$1 bin=$2
    shift 2
    local port url db=$WORK/$name.db
    port=$(free_port)
    url=http://127.0.0.1:$port
    rm -f "$db"*
    env -u RUST_LOG BOTLINK_ADMIN_KEY=$KEY "$@" taskset -c 1 "$bin" serve --listen "127.0.0.1:$port" \
        --public-url "$url" --database-url "sqlite://$db" --rate-limit 1000000 > "$WORK/$name.log" 2>&1 &
    PID=$!
    wait_http "$url/healthz"
    create_links "$url" "$KEY" "$LINKS" "$WORK/paths.txt" > /dev/null
    local args=(--addr "127.0.0.1:$port" --connections 64 --paths "$WORK/paths.txt" --rate "$RATE")
    [ "$VISITORS" != 0 ] && args+=(--visitors "$VISITORS")
    taskset -c 0 "$LOADGEN" "${args[@]}" --duration 3 > /dev/null
    sleep 0.5
    local all0 sq0 all1 sq1
    all0=$(cpu_ticks "$PID")
    sq0=$(sqlite_ticks "$PID")
    taskset -c 0 "$LOADGEN" "${args[@]}" --duration "$DUR" > "$WORK/load.txt"
    sleep 0.3 # the last batch
    all1=$(cpu_ticks "$PID")
    sq1=$(sqlite_ticks "$PID")
    kill "$PID"
    wait "$PID" 2> /dev/null || true
    PID=
    awk -F= -v name="$name" -v all=$((all1 - all0)) -v sq=$((sq1 - sq0)) -v tck="$(getconf CLK_TCK)" '
        { v[$1] = $2 }
        END {
            n = v["responses"]
            printf "%-10s %8d responses  CPU %6.2f µs/req (SQLite %5.2f)  p99 %6.2f ms  non-302 %d\n",
                name, n, all * 1e6 / tck / n, sq * 1e6 / tck / n, v["p99_us"] / 1000, v["non_302"]
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
