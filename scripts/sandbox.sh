# Sourced: start_sandboxes starts target/debug/syncroot-sandbox on free ports with a fresh
# control token and sets $sandbox_pid, $hubspot and $salesforce (base URLs) and exports
# SANDBOX_CONTROL_TOKEN (what /__sandbox/ requests send as X-Sandbox-Token); the caller stops
# it (kill $sandbox_pid).
start_sandboxes() {
  cargo build --quiet -p syncroot-sandbox
  sandbox_log=$(mktemp)
  SANDBOX_CONTROL_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  export SANDBOX_CONTROL_TOKEN
  SANDBOX_HUBSPOT_LISTEN=127.0.0.1:0 SANDBOX_SALESFORCE_LISTEN=127.0.0.1:0 SANDBOX_LOG=warn \
    target/debug/syncroot-sandbox >"$sandbox_log" 2>&1 &
  sandbox_pid=$!
  for _ in $(seq 1 100); do
    grep -q "Salesforce sandbox:" "$sandbox_log" && break
    kill -0 "$sandbox_pid" 2>/dev/null || { cat "$sandbox_log"; echo "the sandboxes exited during start-up" >&2; return 1; }
    sleep 0.1
  done
  hubspot=$(sed -n 's/^HubSpot sandbox: *//p' "$sandbox_log")
  salesforce=$(sed -n 's/^Salesforce sandbox: *//p' "$sandbox_log")
  [ -n "$hubspot" ] && [ -n "$salesforce" ] || { cat "$sandbox_log"; echo "sandbox addresses not found" >&2; return 1; }
}
