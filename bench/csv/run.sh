#!/usr/bin/env bash
# CSV benchmark for `botlink links`: 1,000,000 rows (id, email, phone, city) into links,
# with wall time, rows/s and peak RSS from GNU time, against baselines measured in the same
# run: `cat IN > /dev/null` (reading the file) and a Python csv copy (parsing and writing
# the same rows without building links).
#
# Usage: bench/csv/run.sh            (ROWS=200000 bench/csv/run.sh for a quicker run)
# Aim:   1,000,000 rows in under 10 s with under 50 MB peak memory.
# Files go to $BENCH_DIR (default: $TMPDIR or /tmp, under botlink-bench-csv); the input is
# generated once and reused.
set -euo pipefail

ROWS=${ROWS:-1000000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/botlink-bench-csv}
IN=$DIR/customers-$ROWS.csv
OUT=$DIR/links.csv
KEY=bench-signing-key-0123456789

if [ ! -x /usr/bin/time ]; then
    echo "GNU time is missing: apt-get install -y time" >&2
    exit 1
fi
mkdir -p "$DIR"
if [ ! -s "$IN" ]; then
    echo "generating $IN ($ROWS rows)..." >&2
    python3 "$ROOT/bench/csv/gen.py" "$ROWS" > "$IN.tmp" && mv "$IN.tmp" "$IN"
fi
echo "building botlink (release)..." >&2
(cd "$ROOT" && cargo build --release --quiet -p botlink-server --bin botlink)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/botlink

BASE_SECS=
# measure LABEL COMMAND...: runs COMMAND (stdout to /dev/null) under `time -v` and prints
# seconds, rows/s, peak RSS and the ratio to the first measurement.
measure() {
    local label=$1
    shift
    /usr/bin/time -v -o "$DIR/time.txt" "$@" > /dev/null 2> "$DIR/stderr.txt" || {
        echo "$label failed:" >&2
        cat "$DIR/stderr.txt" "$DIR/time.txt" >&2
        exit 1
    }
    local secs rss
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0
        for (i = 1; i <= n; i++) s = s * 60 + p[i]
        print s }' "$DIR/time.txt")
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$DIR/time.txt")
    BASE_SECS=${BASE_SECS:-$secs}
    awk -v l="$label" -v s="$secs" -v r="$rss" -v n="$ROWS" -v b="$BASE_SECS" 'BEGIN {
        rate = s > 0 ? n / s : 0
        printf "%-44s %7.2f s %11.0f rows/s %8.1f MB peak RSS %7.1fx cat\n", l, s, rate, r / 1024, (b > 0 ? s / b : 0)
    }'
    if grep -q " rows: " "$DIR/stderr.txt"; then
        sed 's/^/    botlink: /' "$DIR/stderr.txt"
    fi
}

echo
echo "$ROWS rows, $(du -h "$IN" | cut -f1) of CSV; $(nproc) CPUs; $(uname -sm)"
measure "baseline: cat IN > /dev/null" cat "$IN"
measure "baseline: python3 csv copy" python3 "$ROOT/bench/csv/copy.py" "$IN" "$OUT"
measure "links: telegram json (--email-col)" \
    "$BIN" links --csv "$IN" --out "$OUT" --channel telegram --bot shop_bot --email-col email
# Keep this run's output to check it below.
cp "$OUT" "$DIR/telegram-json.csv"
measure "links: messenger json (email, phone, city)" \
    "$BIN" links --csv "$IN" --out "$OUT" --channel messenger --bot shop.page \
    --email-col email --phone-col phone --var-col city=city
measure "links: telegram signed raw (--param-col id)" \
    "$BIN" links --csv "$IN" --out "$OUT" --channel telegram --bot shop_bot \
    --param-col id --sign-key "$KEY"
measure "links: same, to stdout" \
    "$BIN" links --csv "$IN" --out - --channel telegram --bot shop_bot \
    --param-col id --sign-key "$KEY"

# The output has every row, and exactly the 2 planted rows failed.
lines=$(wc -l < "$DIR/telegram-json.csv")
errors=$(awk -F, 'NR > 1 && $NF != "" { n++ } END { print n + 0 }' "$DIR/telegram-json.csv")
echo
echo "check: telegram-json.csv has $lines lines (want $((ROWS + 1))), $errors rows with an error (want 2)"
[ "$lines" -eq $((ROWS + 1)) ] && [ "$errors" -eq 2 ]
