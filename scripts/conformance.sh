#!/usr/bin/env bash
# Proves the sandboxes speak the vendors' wire protocols: starts `syncroot-sandbox` on free
# ports and drives it with the vendors' own Python clients (tests/conformance/):
# hubspot-api-client (HubSpot's official SDK) and simple-salesforce; and reads Salesforce
# Outbound Messages (the sandbox's, a documented fixture, SyncRoot's Ack) with Python's xml.etree.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/python.sh
. scripts/sandbox.sh
trap 'kill -TERM $sandbox_pid 2>/dev/null || true; wait $sandbox_pid 2>/dev/null || true' EXIT
start_sandboxes

echo "conformance: HubSpot sandbox $hubspot, Salesforce sandbox $salesforce"
HUBSPOT_BASE_URL="$hubspot" HUBSPOT_TOKEN=pat-na1-sandbox-token \
SALESFORCE_BASE_URL="$salesforce" SALESFORCE_CLIENT_ID=sandbox-sf-client-id SALESFORCE_CLIENT_SECRET=sandbox-sf-client-secret \
  "$PYBIN/python" -m pytest -q -p no:cacheprovider tests/conformance "$@"
