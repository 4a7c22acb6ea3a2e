#!/usr/bin/env bash
# `make run`: the CRM sandboxes in the background, then SyncRoot all-in-one delivering to them
# (its defaults name the sandboxes' addresses and credentials). The sandboxes' webhooks point at
# SyncRoot's receivers, signed with secrets SyncRoot is given here, so a change made through a
# sandbox's UI routes (/__sandbox/ui/contacts) comes back. SyncRoot also accepts the Salesforce
# sandbox's Outbound Messages (its fixed org id), which the sandbox sends once told where
# (docs/salesforce-outbound-messages.md, "The sandbox"). The sandboxes' control API
# (/__sandbox/) needs SANDBOX_CONTROL_TOKEN in an X-Sandbox-Token header: set it to choose one,
# or use the one generated here and printed below. Ctrl-C stops both.
# Usage: scripts/run.sh <directory holding syncroot and syncroot-sandbox>
set -euo pipefail
bin="${1:-target/release}"

api="${SYNCROOT_API_LISTEN:-127.0.0.1:8080}"
hubspot_secret="${SANDBOX_HUBSPOT_CLIENT_SECRET:-sandbox-hubspot-client-secret}"
salesforce_secret="${SANDBOX_SALESFORCE_NOTIFY_SECRET:-sandbox-sf-notify-secret}"

export SANDBOX_CONTROL_TOKEN="${SANDBOX_CONTROL_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
SANDBOX_HUBSPOT_WEBHOOK_URL="${SANDBOX_HUBSPOT_WEBHOOK_URL:-http://$api/webhooks/hubspot}" \
SANDBOX_SALESFORCE_NOTIFY_URL="${SANDBOX_SALESFORCE_NOTIFY_URL:-http://$api/webhooks/salesforce}" \
  "$bin/syncroot-sandbox" &
sandbox=$!
trap 'kill -TERM $sandbox 2>/dev/null || true; wait $sandbox 2>/dev/null || true' EXIT

# Wait for both sandboxes, so SyncRoot's first deliveries find them.
for port in 8091 8092; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    kill -0 "$sandbox" 2>/dev/null || { echo "the CRM sandboxes exited during start-up" >&2; exit 1; }
    sleep 0.1
  done
done
SYNCROOT_HUBSPOT_WEBHOOK_SECRETS="${SYNCROOT_HUBSPOT_WEBHOOK_SECRETS:-$hubspot_secret}" \
SYNCROOT_SALESFORCE_WEBHOOK_SECRETS="${SYNCROOT_SALESFORCE_WEBHOOK_SECRETS:-$salesforce_secret}" \
SYNCROOT_HUBSPOT_APP_ID="${SYNCROOT_HUBSPOT_APP_ID:-1160452}" \
SYNCROOT_SALESFORCE_ORG_ID="${SYNCROOT_SALESFORCE_ORG_ID:-00D8d0000000001EAA}" \
  "$bin/syncroot" all
