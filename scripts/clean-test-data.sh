#!/usr/bin/env bash
# Drops the databases and queues that interrupted test and benchmark runs leave behind (names
# start with syncroot_t_ / syncroot_st / syncroot_chaos_ / syncroot_bench_ and queue prefixes
# t… / st… / chaos… / bench…). Never touches the `syncroot` database.
set -euo pipefail
for db in $(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'syncroot\_t\_%' OR datname LIKE 'syncroot\_st%' OR datname LIKE 'syncroot\_chaos\_%' OR datname LIKE 'syncroot\_bench\_%'"); do
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
done
for q in $(rabbitmqctl -q list_queues name | grep -E '^(t[0-9a-f]{12}|st[0-9]+|chaos[0-9a-f]{12}|bench[0-9a-f]{12})\.' || true); do
  rabbitmqctl -q delete_queue "$q" >/dev/null
done
echo "test data removed"
