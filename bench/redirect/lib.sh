# Shell helpers shared by run.sh and ab.sh (sourced, not run).

# free_port: a TCP port free on 127.0.0.1 now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: up to 10 s for URL to answer.
wait_http() {
    local i
    for i in $(seq 100); do
        curl -fsS -o /dev/null "$1" 2> /dev/null && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

# cpu_ticks PID: user + system CPU time of the process (all threads), in clock ticks.
cpu_ticks() {
    # Fields 14 and 15, counted after the ")" that ends the command name.
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# sqlite_ticks PID: CPU time of the process's SQLite threads (sqlx runs each connection on its
# own thread; botlink-clicks is SQLite's click writer), in clock ticks.
sqlite_ticks() {
    local t sum=0
    for t in /proc/"$1"/task/*; do
        case $(cat "$t/comm" 2> /dev/null) in
            sqlx-sqlite* | botlink-clicks) sum=$((sum + $(sed 's/^.*) //' "$t/stat" | awk '{ print $12 + $13 }'))) ;;
        esac
    done
    echo "$sum"
}

# create_links URL KEY N OUT: a bot with a Telegram channel and N one-channel links on the
# botlink at URL (admin key KEY), their short-link paths written to OUT, one per line. Prints
# the bot's id.
create_links() {
    local url=$1 key=$2 left=$3 out=$4 bot n
    bot=$(curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d '{"name":"Shop","channels":{"telegram":{"username":"shop_bot"}}}' "$url/api/v1/bots" \
        | jq -r .id)
    : > "$out"
    while [ "$left" -gt 0 ]; do
        n=$((left < 1000 ? left : 1000))
        jq -nc --arg b "$bot" --argjson n "$n" \
            '{links: [range($n) | {bot_id: $b, channels: ["telegram"]}]}' \
            | curl -fsS -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
                --data-binary @- "$url/api/v1/links" \
            | jq -r '.links[].short_url' | sed -E 's#^https?://[^/]+##' >> "$out"
        left=$((left - n))
    done
    [ "$(wc -l < "$out")" -eq "$3" ] || { echo "link creation failed" >&2; return 1; }
    echo "$bot"
}
