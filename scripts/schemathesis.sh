#!/usr/bin/env bash
# Fuzzes the live API with schemathesis against the committed spec (openapi/openapi.json):
# no 5xx, no response that contradicts the spec, every invalid input refused.
# Starts its own sandboxes and `syncroot all` on free ports, with its own database and queue
# prefix, delivering to those sandboxes.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-60}"
bin=target/debug/syncroot
cargo build --quiet
. scripts/python.sh
. scripts/sandbox.sh
start_sandboxes

tag="st$(date +%s)$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
key="schemathesis-key-$(date +%s%N)"
admin_key="schemathesis-admin-$(date +%s%N)"
log=$(mktemp)
export SYNCROOT_API_LISTEN="127.0.0.1:$port" SYNCROOT_API_KEYS="$key" SYNCROOT_ADMIN_KEYS="$admin_key" \
  SYNCROOT_DATABASE_URL="postgres://postgres@127.0.0.1:5432/syncroot_$tag" \
  SYNCROOT_QUEUE_PREFIX="$tag" SYNCROOT_QUEUE_SHARDS=2 SYNCROOT_LOG=warn \
  SYNCROOT_HUBSPOT_BASE_URL="$hubspot" SYNCROOT_SALESFORCE_LOGIN_URL="$salesforce" \
  SYNCROOT_SALESFORCE_ORG_ID=00D8d0000000001EAA
# With an org id (and no path token), /webhooks/salesforce/outbound parses what it is sent, so
# the fuzzer reaches the XML parser; /webhooks/salesforce/outbound/{token} answers 404.
"$bin" all >"$log" 2>&1 &
pid=$!
cleanup() {
  kill -TERM "$pid" "$sandbox_pid" 2>/dev/null || true
  wait "$pid" "$sandbox_pid" 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS syncroot_$tag WITH (FORCE)" >/dev/null 2>&1 || true
  for q in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^$tag\." || true); do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
  rm -f "$log"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "syncroot exited during start-up" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$log"; echo "syncroot did not become ready" >&2; exit 1; }

# Every check runs but one: ensure_resource_availability reads a replayed idempotent create
# (same Idempotency-Key and body as an earlier request, answered with the first response, as
# Stripe does) as "created", and fails when that first contact has been deleted since.
# One worker: with several, Hypothesis describes strategies by parsing source with CPython's
# `ast` from several threads at once, which Python 3.11 can fail on ("AST constructor recursion
# depth mismatch") — an error of the tool, not of the API.
echo "schemathesis: fuzzing http://127.0.0.1:$port with up to $MAX_EXAMPLES examples per operation"
# Keys per security scheme (the write key for /contacts, the admin key for /dlq) and the
# discard guard's 400 are in scripts/schemathesis.toml.
ST_API_KEY="$key" ST_ADMIN_KEY="$admin_key" \
"$PYBIN/st" --config-file scripts/schemathesis.toml run openapi/openapi.json \
  --url "http://127.0.0.1:$port" \
  --checks all \
  --exclude-checks ensure_resource_availability \
  --max-examples "$MAX_EXAMPLES" \
  --workers 1 \
  --seed 7 \
  --suppress-health-check too_slow,filter_too_much \
  --no-color "$@"
