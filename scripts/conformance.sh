#!/usr/bin/env bash
# Proves the sandboxes speak the vendors' wire protocols: starts `syncroot sandbox` on free
# ports and drives it with the vendors' own Python clients (tests/conformance/):
# hubspot-api-client (HubSpot's official SDK) and simple-salesforce.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet
. scripts/python.sh

log=$(mktemp)
SYNCROOT_SANDBOX_HUBSPOT_LISTEN=127.0.0.1:0 SYNCROOT_SANDBOX_SALESFORCE_LISTEN=127.0.0.1:0 SYNCROOT_LOG=warn \
  target/debug/syncroot sandbox >"$log" 2>&1 &
pid=$!
trap 'kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -f "$log"' EXIT

for _ in $(seq 1 100); do
  grep -q "Salesforce sandbox:" "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "the sandboxes exited during start-up" >&2; exit 1; }
  sleep 0.1
done
hubspot=$(sed -n 's/^HubSpot sandbox: *//p' "$log")
salesforce=$(sed -n 's/^Salesforce sandbox: *//p' "$log")
[ -n "$hubspot" ] && [ -n "$salesforce" ] || { cat "$log"; echo "sandbox addresses not found" >&2; exit 1; }

echo "conformance: HubSpot sandbox $hubspot, Salesforce sandbox $salesforce"
HUBSPOT_BASE_URL="$hubspot" HUBSPOT_TOKEN=pat-na1-sandbox-token \
SALESFORCE_BASE_URL="$salesforce" SALESFORCE_CLIENT_ID=sandbox-sf-client-id SALESFORCE_CLIENT_SECRET=sandbox-sf-client-secret \
  "$PYBIN/python" -m pytest -q -p no:cacheprovider tests/conformance "$@"
