#!/usr/bin/env bash
# `make run`: the CRM sandboxes in the background, then SyncRoot all-in-one delivering to them
# (its defaults name the sandboxes' addresses and credentials). Ctrl-C stops both.
# Usage: scripts/run.sh <directory holding syncroot and syncroot-sandbox>
set -euo pipefail
bin="${1:-target/release}"

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
"$bin/syncroot" all
