#!/usr/bin/env bash
# Checks that the API answers as its OpenAPI document says, with schemathesis
# (https://schemathesis.readthedocs.io) and every one of its checks.
#
# Builds `botlink`, starts `botlink serve` on a temporary SQLite database on a free loopback
# port with an admin key, runs `schemathesis run --checks all` against
# /api-docs/openapi.json, and exits non-zero on any failure. Schemathesis is installed from
# PyPI into a virtual environment under target/ the first time.
#
# Usage: scripts/schemathesis.sh [EXAMPLES_PER_OPERATION] [extra schemathesis options...]
#   EXAMPLES_PER_OPERATION  default 25; CI runs a short pass with fewer.
# Environment: SCHEMATHESIS_SEED (default 1) makes the generated cases repeat from run to run;
# SCHEMATHESIS_TIMEOUT (seconds, default 900) stops a run that hangs. The number of examples
# is what bounds a run (schemathesis's --max-time would instead keep generating until the
# time is spent).
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${1:-25}
shift || true
seed=${SCHEMATHESIS_SEED:-1}
hard_limit=${SCHEMATHESIS_TIMEOUT:-900}
venv=target/schemathesis-venv
st="$venv/bin/schemathesis"

command -v python3 >/dev/null || { echo "python3 is needed: schemathesis is installed from PyPI into $venv" >&2; exit 1; }
if ! [ -x "$st" ] || ! "$st" --version | grep -q 'version 4\.'; then
  echo "installing schemathesis 4 into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --upgrade pip
  "$venv/bin/pip" install --quiet 'schemathesis>=4.1,<5'
fi
"$st" --version

cargo build --quiet -p botlink-server --bin botlink

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The key only lives as long as this run.
admin_key="blk_schemathesis_$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
: >"$work/server.log"
# Port 0: the kernel picks a free port, which the server logs once it listens. The rate limit
# is raised so that the run tests the API rather than the limiter (429 stays documented).
"${CARGO_TARGET_DIR:-target}/debug/botlink" serve \
  --listen 127.0.0.1:0 \
  --database-url "sqlite://$work/botlink.db" \
  --secret-key "$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')" \
  --admin-key "$admin_key" \
  --rate-limit 100000 \
  --log-format json \
  >"$work/server.log" 2>&1 &
server_pid=$!

addr=""
for _ in $(seq 1 300); do
  addr=$(sed -n 's/.*"botlink is listening".*"addr":"\([0-9.:]*\)".*/\1/p' "$work/server.log" | head -n1)
  [ -n "$addr" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "botlink serve exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/server.log" >&2; echo "botlink serve did not start listening" >&2; exit 1; }
echo "botlink serve listens on $addr"

# Something to find: a bot, one of its entry points and a link, whose ids fill the path
# parameters (otherwise nearly every request with an id in its path would only meet 404).
api() {
  curl -sS --fail-with-body -X "$1" "http://$addr$2" -H "Authorization: Bearer $admin_key" \
    -H 'Content-Type: application/json' ${3:+--data "$3"}
}
field() { python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
bot_id=$(api POST /api/v1/bots '{"name": "Shop", "channels": {"telegram": {"username": "shop_bot"}, "viber": {"uri": "shopbot"}}}' | field id)
api POST "/api/v1/bots/$bot_id/entry_points" '{"key": "welcome", "node": "start", "default_field": "f1"}' >/dev/null
link_id=$(api POST /api/v1/links "{\"bot_id\": \"$bot_id\", \"title\": \"Winter sale\"}" | field id)

# positive_data_acceptance expects every request that fits the schemas to succeed. For these
# operations success also depends on rules JSON Schema cannot state, so a 422 that names such a
# rule is the right answer to schema-valid data there (the other checks, 5xx included, still
# apply to them in full; every other operation keeps the check's default statuses):
#   POST /api/v1/bots, PATCH /api/v1/bots/{bot_id}: each messenger's rule for the bot's
#     identifier (a Telegram username, a Viber URI, a WhatsApp number...), and that a channel
#     has one.
#   POST /api/v1/links: the channels must be ones the bot has, the parameter must fit each
#     channel's length and alphabet once encoded, a scheme needs its inputs (raw: payload.param;
#     fields and entry: an entry point), and expires_at must be in the future.
#   PATCH /api/v1/links/{link_id}: expires_at must be in the future.
#   GET /api/v1/links: `cursor` must be one the API returned (it is opaque).
#   The three stats operations: `from` must not be after `to`.
#   GET /api/v1/bots/{bot_id}/contacts(.csv), GET /api/v1/deliveries, GET
#     /api/v1/bots/{bot_id}/runs, GET /api/v1/runs/{run_id}/recipients(.csv): `cursor` is
#     opaque, as for links.
#   PUT /api/v1/bots/{bot_id}/scenario: the scenario's own rules (a start node, nodes that
#     exist, steps of one kind...), which the document's reference states, not a JSON Schema.
#   POST /api/v1/bots/{bot_id}/call_node: the recipient must have started the bot (a bot cannot
#     write first), `to` takes channel and chat_id, or external_id, the call takes `to` or
#     `recipients`, and the bot must have a scenario with the node.
#   POST /api/v1/bots/{bot_id}/channels/{channel}/webhook: the bot must have the channel, with
#     the token its platform needs.
cat >"$work/base.toml" <<'TOML'
[[operations]]
include-name = [
  "POST /api/v1/bots",
  "PATCH /api/v1/bots/{bot_id}",
  "POST /api/v1/links",
  "PATCH /api/v1/links/{link_id}",
  "GET /api/v1/links",
  "GET /api/v1/links/{link_id}/stats",
  "GET /api/v1/bots/{bot_id}/stats",
  "GET /api/v1/bots/{bot_id}/entry_points/{key}/stats",
  "GET /api/v1/bots/{bot_id}/contacts",
  "GET /api/v1/bots/{bot_id}/contacts.csv",
  "GET /api/v1/deliveries",
  "GET /api/v1/bots/{bot_id}/runs",
  "GET /api/v1/runs/{run_id}/recipients",
  "GET /api/v1/runs/{run_id}/recipients.csv",
  "PUT /api/v1/bots/{bot_id}/scenario",
  "POST /api/v1/bots/{bot_id}/call_node",
  "POST /api/v1/bots/{bot_id}/channels/{channel}/webhook",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
TOML
# The seeded ids go to every operation but the deletions, so that they stay to be found.
cat "$work/base.toml" - >"$work/seeded.toml" <<TOML

[[operations]]
include-method-regex = "^(GET|POST|PATCH)$"
parameters = { "path.bot_id" = "$bot_id", "path.key" = "welcome", "path.link_id" = "$link_id" }
TOML

# Two passes, every check in both (`--checks all`): the coverage and fuzzing phases generate
# requests from the schemas, with the seeded ids in their paths; the stateful phase chains
# creations into reads, changes and deletions through the links schemathesis infers from the
# document, so it takes its ids from the answers, not fixed ones (with fixed ids it would
# read "created, then 404" when one step deleted the seeded bot and a later one used it).
# Both run from the temporary directory: schemathesis keeps a cache in its working directory
# and loads a schemathesis.toml it finds there or above.
st=$(realpath "$st")
run() {
  local config=$1 phases=$2
  shift 2
  (cd "$work" && timeout "$hard_limit" "$st" --config-file "$config" run \
    "http://$addr/api-docs/openapi.json" \
    --phases "$phases" \
    --checks all \
    --header "Authorization: Bearer $admin_key" \
    --max-examples "$examples" \
    --seed "$seed" \
    --request-timeout 10 \
    --workers 1 \
    --generation-database none \
    --no-color \
    "$@")
}
status=0
run "$work/seeded.toml" coverage,fuzzing "$@" || status=$?
run "$work/base.toml" stateful "$@" || status=$?

if [ "$status" -ne 0 ]; then
  echo "schemathesis found failures (exit $status); the server's log:" >&2
  grep -E '"level":"(ERROR|WARN)"' "$work/server.log" | tail -n 50 >&2 || true
fi
exit "$status"
