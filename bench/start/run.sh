#!/usr/bin/env bash
# Start benchmark: Starts per second from a Telegram webhook to the scenario's `send_me`
# received by the CRM, on SQLite and on PostgreSQL, with the webhook answer's latency, beside
# bareinbox (a bare hyper server that inserts each webhook body into SQLite, durably, and
# answers 200), measured in the same run with the same load generator.
#
# For each server: a closed-loop peak run; then fixed-rate runs at half of botlink's peak
# (end to end), alternating with bareinbox at the same rate. botlink's runs last until every
# accepted update's delivery and greeting have arrived. Server CPU time from /proc/PID/stat
# (botlink's, and on PostgreSQL its backends').
#
# Usage (from anywhere):  bench/start/run.sh
# Knobs (environment):    DURATION=15  CONNS=40  LINKS=1000  WARMUP=3  ROUNDS=3
#                         BACKENDS="sqlite postgres"  PG_URL=postgres://postgres@127.0.0.1:5432/test
#                         DRAIN=300 (s to wait for deliveries)  KEEP=1 (keep the temp dir)
#                         STRICT=1 (exit 1 when an aim is missed)
# Output: a table on stdout, also written to bench/start/last-run.md.
# Needs: cargo, curl, jq, python3 (free ports), psql (PostgreSQL); taskset to pin (server:
# CPU 1, load generator and sinks: CPU 0).
set -euo pipefail

DURATION=${DURATION:-15}
CONNS=${CONNS:-40}
LINKS=${LINKS:-1000}
WARMUP=${WARMUP:-3}
ROUNDS=${ROUNDS:-3}
DRAIN=${DRAIN:-300}
BACKENDS=${BACKENDS:-sqlite postgres}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_DB=botlink_bench_start
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT_MD=$ROOT/bench/start/last-run.md
ADMIN_KEY=blk_bench_admin_key_0123456789abcdefghij
# Fixed, so that a kept database (KEEP=1) opens again; it seals only this run's bot secrets.
SECRET_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
WEBHOOK_SECRET=bench_webhook_secret_0123456789
TCK=$(getconf CLK_TCK)
# shellcheck source=bench/redirect/lib.sh
. "$ROOT/bench/redirect/lib.sh"

for tool in cargo curl jq python3; do
    command -v "$tool" > /dev/null || { echo "missing: $tool" >&2; exit 1; }
done
case " $BACKENDS " in
    *" postgres "*) command -v psql > /dev/null || { echo "missing: psql (or BACKENDS=sqlite)" >&2; exit 1; } ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/botlink-bench-start.XXXXXX")
PIDS=()
PG_MADE=
VACUUMER=
VACUUM_NOTE=
cleanup() {
    local pid i
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2> /dev/null || true
    done
    # A graceful stop finishes the work in hand: at most 15 s of it.
    for pid in "${PIDS[@]}"; do
        for i in $(seq 150); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    if [ -n "$PG_MADE" ]; then
        psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" > /dev/null 2>&1 || true
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        echo "kept $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%T)] $*" >&2; }

log "building release binaries..."
(cd "$ROOT" && cargo build --release --quiet -p botlink-server -p botlink-testkit \
    --bin botlink --bin bareinbox --bin startgen)
# Copies: the target directory may be shared with other worktrees, whose builds would replace
# the binaries between runs.
mkdir "$WORK/bin"
for b in botlink bareinbox startgen; do
    cp "${CARGO_TARGET_DIR:-$ROOT/target}/release/$b" "$WORK/bin/"
done
BIN=$WORK/bin

SERVER_PIN=()
LOAD_PIN=()
if command -v taskset > /dev/null && [ "$(nproc)" -ge 2 ]; then
    SERVER_PIN=(taskset -c 1)
    LOAD_PIN=(taskset -c 0)
    PINNING="server on CPU 1, load generator and sinks on CPU 0"
else
    PINNING="not pinned (no taskset or one CPU)"
fi

# busy_ticks: CPU time of the whole machine (all CPUs, every process), in clock ticks.
busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat
}

# pg_ticks PID: when PID is botlink on PostgreSQL, the CPU time of the PostgreSQL backends
# serving the benchmark's database, in clock ticks; else 0.
pg_ticks() {
    local pid sum=0
    [ -n "$PG_MADE" ] && [ "$1" = "$BL_PID" ] || { echo 0; return; }
    for pid in $(psql -Atq "$PG_URL" -c "SELECT pid FROM pg_stat_activity WHERE datname = '$PG_DB'"); do
        [ -r "/proc/$pid/stat" ] && sum=$((sum + $(cpu_ticks "$pid")))
    done
    echo "$sum"
}

# field FILE KEY: a value from a startgen report.
field() { awk -F= -v k="$2" '$1 == k { print $2 }' "$1"; }

SINK_PORT=$(free_port)
SINK=127.0.0.1:$SINK_PORT

# measure NAME PID PORT WEBHOOK_PATH ARGS...: runs startgen against the server at PORT, report
# in $WORK/NAME.txt, with the server's CPU time around it (for botlink the run ends when the
# last delivery has arrived, so the work behind the answers counts too).
measure() {
    local name=$1 pid=$2 port=$3 path=$4
    shift 4
    local before after busy_before busy_after pg_before pg_after t0
    t0=$(date +%s.%N)
    busy_before=$(busy_ticks)
    before=$(cpu_ticks "$pid")
    pg_before=$(pg_ticks "$pid")
    "${LOAD_PIN[@]}" "$BIN/startgen" --addr "127.0.0.1:$port" --path "$path" \
        --secret "$WEBHOOK_SECRET" --params "$WORK/params.txt" --connections "$CONNS" \
        --drain-timeout "$DRAIN" "$@" > "$WORK/$name.txt"
    after=$(cpu_ticks "$pid")
    pg_after=$(pg_ticks "$pid")
    busy_after=$(busy_ticks)
    {
        echo "cpu_ticks=$((after - before))"
        echo "pg_ticks=$((pg_after - pg_before))"
        echo "busy_ticks=$((busy_after - busy_before))"
        echo "wall_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')"
    } >> "$WORK/$name.txt"
    log "$name: $(field "$WORK/$name.txt" rps) updates/s accepted," \
        "p99 $(field "$WORK/$name.txt" p99_us) µs," \
        "$(field "$WORK/$name.txt" delivered_rps) Starts/s delivered" \
        "(lag p99 $(field "$WORK/$name.txt" lag_p99_us) µs, missing $(field "$WORK/$name.txt" missing_deliveries))," \
        "non-200 $(field "$WORK/$name.txt" non_200_statuses), errors $(field "$WORK/$name.txt" errors)"
}

# --- bareinbox -------------------------------------------------------------------------------
BARE_PORT=$(free_port)
"${SERVER_PIN[@]}" "$BIN/bareinbox" "127.0.0.1:$BARE_PORT" "$WORK/bareinbox.db" \
    > "$WORK/bareinbox.log" 2>&1 &
BARE_PID=$!
PIDS+=("$BARE_PID")
wait_http "http://127.0.0.1:$BARE_PORT/"
BARE_PATH=/webhooks/telegram/bare

# The params file is needed by every run; bareinbox does not read it (any text will do until
# botlink's links exist).
echo "l_warmup" > "$WORK/params.txt"
log "bareinbox: warm-up, then peak (${DURATION} s, $CONNS connections)..."
measure bare-warm "$BARE_PID" "$BARE_PORT" "$BARE_PATH" --duration "$WARMUP"
measure bare-peak "$BARE_PID" "$BARE_PORT" "$BARE_PATH" --duration "$DURATION"
BARE_HALF=$(($(field "$WORK/bare-peak.txt" rps) / 2))
log "bareinbox at half of its peak ($BARE_HALF/s)..."
measure bare-own-half "$BARE_PID" "$BARE_PORT" "$BARE_PATH" --duration "$DURATION" --rate "$BARE_HALF"

# --- botlink, per backend ------------------------------------------------------------------
BL_PID=
start_botlink() {
    local db=$1
    BL_PORT=$(free_port)
    BL_URL=http://127.0.0.1:$BL_PORT
    # Logs at the default level (info), as deployed; RUST_LOG from the caller is not inherited.
    env -u RUST_LOG BOTLINK_ADMIN_KEY=$ADMIN_KEY BOTLINK_SECRET_KEY=$SECRET_KEY \
        "${SERVER_PIN[@]}" "$BIN/botlink" serve \
        --listen "127.0.0.1:$BL_PORT" --public-url "$BL_URL" --database-url "$db" \
        --rate-limit 1000000 --outbound-allow 127.0.0.0/8 \
        > "$WORK/botlink-$BACKEND.log" 2>&1 &
    BL_PID=$!
    PIDS+=("$BL_PID")
    wait_http "$BL_URL/healthz"
}

# stop_botlink: a graceful stop (SIGTERM), which finishes the work in hand; after 15 s, SIGKILL.
stop_botlink() {
    local i
    kill "$BL_PID" 2> /dev/null || true
    for i in $(seq 150); do
        kill -0 "$BL_PID" 2> /dev/null || break
        sleep 0.1
    done
    kill -9 "$BL_PID" 2> /dev/null || true
    wait "$BL_PID" 2> /dev/null || true
}

api() {
    local method=$1 path=$2
    shift 2
    curl -fsS -X "$method" -H "Authorization: Bearer $ADMIN_KEY" \
        -H 'Content-Type: application/json' "$@" "$BL_URL/api/v1$path"
}

# setup_bot: a Telegram bot whose Bot API is the sink, its scenario (a greeting, then send_me
# to the sink), and LINKS stored-scheme links, each for its own customer; their Start
# parameters go to $WORK/params.txt. Sets BOT_ID.
setup_bot() {
    local left=$LINKS n i=0
    BOT_ID=$(jq -nc --arg s "$WEBHOOK_SECRET" --arg api "http://$SINK" \
        '{name: "Shop", channels: {telegram: {username: "shop_bot", token: "123456:ABC-bench", rate_limit: 100000,
          webhook_secret: $s, api_base_url: $api}}}' \
        | api POST /bots --data-binary @- | jq -r .id)
    jq -nc --arg url "http://$SINK/hook" \
        '{start: "welcome", nodes: {welcome: [{message: "Hi {{user_name}}"},
          {send_me: {url: $url, data: {customer_id: "{{clientExternalId}}"}}}]}}' \
        | api PUT "/bots/$BOT_ID/scenario" --data-binary @- > /dev/null
    : > "$WORK/params.txt"
    while [ "$left" -gt 0 ]; do
        n=$((left < 1000 ? left : 1000))
        jq -nc --arg b "$BOT_ID" --argjson n "$n" --argjson i "$i" \
            '{links: [range($n) | {bot_id: $b, channels: ["telegram"],
              payload: {external_id: "customer_\(. + $i)"}}]}' \
            | api POST /links --data-binary @- \
            | jq -r '.links[].channels[] | select(.channel == "telegram") | .url' \
            | sed -E 's#^.*[?&]start=##' >> "$WORK/params.txt"
        left=$((left - n))
        i=$((i + n))
    done
    [ "$(wc -l < "$WORK/params.txt")" -eq "$LINKS" ] || { echo "link creation failed" >&2; return 1; }
}

for BACKEND in $BACKENDS; do
    case $BACKEND in
        sqlite) DB_URL=sqlite://$WORK/botlink.db ;;
        postgres)
            psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" -c "CREATE DATABASE $PG_DB" > /dev/null
            PG_MADE=1
            DB_URL=${PG_URL%/*}/$PG_DB
            ;;
        *) echo "unknown backend $BACKEND (sqlite, postgres)" >&2; exit 1 ;;
    esac
    log "botlink on $BACKEND ($PINNING): a bot, its scenario and $LINKS links..."
    start_botlink "$DB_URL"
    if [ "$BACKEND" = postgres ] && [ "$(psql -Atq "$PG_URL" -c 'SHOW autovacuum')" = off ]; then
        # A server without autovacuum never gathers statistics on the flow's queue tables nor
        # clears their dead rows, which no production server would do: vacuum and analyze
        # them every 10 s in its stead (and say so in the report).
        VACUUM_NOTE="- PostgreSQL's autovacuum is off on this server: the benchmark ran \`VACUUM (ANALYZE)\` on the flow's tables every 10 s in its stead (its CPU is not in the figures)."
        (
            while sleep 10; do
                psql -q "$DB_URL" -c "VACUUM (ANALYZE) inbox, messages, deliveries, delivery_attempts, contacts, starts, start_counts" > /dev/null 2>&1 || true
            done
        ) &
        VACUUMER=$!
        PIDS+=("$VACUUMER")
    fi
    setup_bot
    BL_PATH=/webhooks/telegram/$BOT_ID
    # The warm-up is also the check that the flow works end to end: every Start delivered.
    measure "bl-$BACKEND-warm" "$BL_PID" "$BL_PORT" "$BL_PATH" --sink "$SINK" \
        --duration "$WARMUP" --rate 200
    if [ "$(field "$WORK/bl-$BACKEND-warm.txt" missing_deliveries)" != 0 ] \
        || [ "$(field "$WORK/bl-$BACKEND-warm.txt" status_200)" = 0 ]; then
        echo "the warm-up's Starts were not all delivered:" >&2
        cat "$WORK/bl-$BACKEND-warm.txt" >&2
        tail -20 "$WORK/botlink-$BACKEND.log" >&2
        exit 1
    fi
    log "botlink on $BACKEND: peak (${DURATION} s, $CONNS connections, until every delivery)..."
    measure "bl-$BACKEND-peak" "$BL_PID" "$BL_PORT" "$BL_PATH" --sink "$SINK" --duration "$DURATION"
    half=$(($(field "$WORK/bl-$BACKEND-peak.txt" delivered_rps) / 2))
    [ "$half" -gt 0 ] || { echo "no Start delivered at peak" >&2; exit 1; }
    log "botlink on $BACKEND and bareinbox at $half/s (half of botlink's end-to-end peak)," \
        "$ROUNDS alternating rounds..."
    for r in $(seq "$ROUNDS"); do
        measure "bl-$BACKEND-half-$r" "$BL_PID" "$BL_PORT" "$BL_PATH" --sink "$SINK" \
            --duration "$DURATION" --rate "$half"
        measure "bare-$BACKEND-half-$r" "$BARE_PID" "$BARE_PORT" "$BARE_PATH" \
            --duration "$DURATION" --rate "$half"
    done
    eval "RSS_$BACKEND=$(awk '/^VmHWM/ { print $2 }' "/proc/$BL_PID/status")"
    stop_botlink
    if [ -n "$VACUUMER" ]; then
        kill "$VACUUMER" 2> /dev/null || true
        wait "$VACUUMER" 2> /dev/null || true
        VACUUMER=
    fi
    if [ "$BACKEND" = postgres ]; then
        psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" > /dev/null
        PG_MADE=
    fi
done

# --- report ----------------------------------------------------------------------------------
# median_round NAME: copies the round of NAME with the median webhook p99 to NAME.txt and
# writes every round's p99 (ms) to NAME-p99s.txt, in order of p99.
median_round() {
    local name=$1 r
    for r in $(seq "$ROUNDS"); do
        echo "$(field "$WORK/$name-$r.txt" p99_us) $r"
    done | sort -n > "$WORK/$name-p99s.txt"
    r=$(awk -v m=$(((ROUNDS + 1) / 2)) 'NR == m { print $2 }' "$WORK/$name-p99s.txt")
    cp "$WORK/$name-$r.txt" "$WORK/$name.txt"
}
p99s() { awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / 1000 }' "$WORK/$1-p99s.txt"; }
ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }
f() { field "$WORK/$1.txt" "$2"; }
# us_per_start RUN: server CPU µs (botlink's, plus its PostgreSQL backends') per accepted update.
us_per_start() {
    awk -v t="$(f "$1" cpu_ticks)" -v p="$(f "$1" pg_ticks)" -v n="$(f "$1" status_200)" \
        -v tck="$TCK" 'BEGIN { printf "%.0f", n ? (t + p) * 1e6 / tck / n : 0 }'
}
# cpu_pct RUN [pg]: the server's (or its PostgreSQL backends') CPU time over the run's wall time
# (for botlink until the last delivery), 100 = one CPU.
cpu_pct() {
    awk -v t="$(f "$1" "${2:-cpu}_ticks")" -v s="$(f "$1" wall_s)" -v tck="$TCK" \
        'BEGIN { printf "%.0f", t / tck / s * 100 }'
}
# others RUN: CPU used by everything but the server (and its PostgreSQL backends) and startgen
# during a run, in % of one CPU (the noise of a shared machine).
others() {
    awk -v b="$(f "$1" busy_ticks)" -v t="$(f "$1" cpu_ticks)" -v p="$(f "$1" pg_ticks)" \
        -v l="$(f "$1" cpu_s)" -v s="$(f "$1" wall_s)" -v tck="$TCK" \
        'BEGIN { o = ((b - t - p) / tck - l) / s * 100; printf "%.0f", o < 0 ? 0 : o }'
}
verdict() { if [ "$1" = 1 ]; then echo "yes"; else echo "**NO**"; fi; }
errs() { echo "$(($(f "$1" non_200) + $(f "$1" errors)))"; }

aims=""
{
    echo "# Start benchmark: last run"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD)" \
        "$(git -C "$ROOT" diff --quiet HEAD -- crates && echo clean || echo '(with uncommitted changes in crates/)')," \
        "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $PINNING" \
        "(PostgreSQL not pinned). $CONNS connections at peak, ${DURATION} s of updates a run" \
        "(botlink's runs last until the last delivery), $LINKS links, $ROUNDS alternating rounds" \
        "at half load (the round with the median webhook p99 shown)."
    echo
    echo "| server | updates/s accepted at peak | Starts/s end to end at peak | webhook p99 at peak (ms) | server CPU at peak | half load (updates/s) | webhook p50 / p99 at half load (ms) | delivery lag p50 / p99 at half load (ms) | server CPU µs per Start at half load | non-200 + errors | Starts not delivered |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    echo "| bareinbox (SQLite insert per update) | $(f bare-peak rps) | | $(ms "$(f bare-peak p99_us)") | $(cpu_pct bare-peak)% | $(f bare-own-half target_rate) | $(ms "$(f bare-own-half p50_us)") / $(ms "$(f bare-own-half p99_us)") | | $(us_per_start bare-own-half) | $(($(errs bare-peak) + $(errs bare-own-half))) | |"
    for BACKEND in $BACKENDS; do
        median_round "bl-$BACKEND-half"
        median_round "bare-$BACKEND-half"
        p=bl-$BACKEND-peak h=bl-$BACKEND-half
        pg=""
        [ "$BACKEND" = postgres ] && pg=" + PostgreSQL $(cpu_pct "$p" pg)%"
        echo "| botlink on $BACKEND | $(f "$p" rps) | $(f "$p" delivered_rps) | $(ms "$(f "$p" p99_us)") | $(cpu_pct "$p")%$pg | $(f "$h" target_rate) | $(ms "$(f "$h" p50_us)") / $(ms "$(f "$h" p99_us)") | $(ms "$(f "$h" lag_p50_us)") / $(ms "$(f "$h" lag_p99_us)") | $(us_per_start "$h") | $(($(errs "$p") + $(errs "$h"))) | $(($(f "$p" missing_deliveries) + $(f "$h" missing_deliveries))) |"
        echo "| bareinbox at the same half load | | | | | $(f "bare-$BACKEND-half" target_rate) | $(ms "$(f "bare-$BACKEND-half" p50_us)") / $(ms "$(f "bare-$BACKEND-half" p99_us)") | | $(us_per_start "bare-$BACKEND-half") | $(errs "bare-$BACKEND-half") | |"
    done
    echo
    echo "| botlink / bareinbox | value | aim | met |"
    echo "|---|---:|---|---|"
    for BACKEND in $BACKENDS; do
        p=bl-$BACKEND-peak h=bl-$BACKEND-half
        echo "| $BACKEND: updates accepted a second at peak | $(ratio "$(f "$p" rps)" "$(f bare-peak rps)")× | | |"
        echo "| $BACKEND: Starts delivered a second at peak / bareinbox's inserts a second | $(ratio "$(f "$p" delivered_rps)" "$(f bare-peak rps)")× | | |"
        echo "| $BACKEND: webhook p99 at half load, same rate (rounds, ms: botlink $(p99s "$h"); bareinbox $(p99s "bare-$BACKEND-half")) | $(ratio "$(f "$h" p99_us)" "$(f "bare-$BACKEND-half" p99_us)")× | | |"
        echo "| $BACKEND: server CPU per Start at half load, same rate | $(ratio "$(us_per_start "$h")" "$(us_per_start "bare-$BACKEND-half")")× | | |"
        if [ "$BACKEND" = sqlite ]; then
            ok=$(awk -v r="$(f "$p" delivered_rps)" 'BEGIN { print (r >= 2000) }')
            aims+=$ok
            echo "| sqlite: Starts a second end to end at peak | $(f "$p" delivered_rps) | ≥ 2,000 | $(verdict "$ok") |"
        fi
        ok=$(awk -v u="$(f "$h" p99_us)" 'BEGIN { print (u < 10000) }')
        aims+=$ok
        echo "| $BACKEND: webhook p99 at half of peak | $(ms "$(f "$h" p99_us)") ms | < 10 ms | $(verdict "$ok") |"
    done
    echo
    for BACKEND in $BACKENDS; do
        p=bl-$BACKEND-peak h=bl-$BACKEND-half
        echo "- botlink on $BACKEND at peak: $(f "$p" status_200) updates accepted in $(f "$p" elapsed_s) s," \
            "the last delivery $(f "$p" drain_s) s after the last answer (deliveries $(f "$p" deliveries)," \
            "greetings $(f "$p" messages), duplicates $(f "$p" duplicates)); delivery lag p50 / p99 / max" \
            "$(ms "$(f "$p" lag_p50_us)") / $(ms "$(f "$p" lag_p99_us)") / $(ms "$(f "$p" lag_max_us)") ms." \
            "At half load: $(f "$h" delivered_rps) Starts/s delivered, webhook max $(ms "$(f "$h" max_us)") ms." \
            "Peak RSS $(($(eval echo "\$RSS_$BACKEND") / 1024)) MB."
        echo "- Other processes used $(others "$p")% of a CPU during botlink's peak on $BACKEND" \
            "and $(others "$h")% / $(others "bare-$BACKEND-half")% during the half-load runs shown" \
            "(botlink / bareinbox; noise: figures compare only when these are near 0)."
    done
    echo "- bareinbox's peak: other processes $(others bare-peak)% of a CPU; load generator $(f bare-peak loadgen_cpu_pct)%."
    [ -z "$VACUUM_NOTE" ] || echo "$VACUUM_NOTE"
} | tee "$OUT_MD"

if [ "${STRICT:-0}" = 1 ] && [[ $aims == *0* ]]; then
    exit 1
fi
