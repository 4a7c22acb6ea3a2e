#!/usr/bin/env bash
# Makes sure Postgres (127.0.0.1:5432, trust auth) and RabbitMQ (127.0.0.1:5672, guest/guest)
# are installed and running. Installs them from Debian's packages if missing; starts whichever
# is down; waits until both answer. Safe to run any number of times.
set -euo pipefail

log() { echo "services: $*" >&2; }

need_apt=()
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql postgresql-client)
command -v rabbitmq-server >/dev/null 2>&1 || need_apt+=(rabbitmq-server)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "installing ${need_apt[*]} from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Postgres
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version=$(ls /etc/postgresql | sort -V | tail -1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # A freshly installed cluster asks for passwords over TCP; the development set-up is trust
  # on loopback only.
  if [ -f "$hba" ] && ! grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
    log "allowing trust authentication on 127.0.0.1 for development"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  log "starting Postgres $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
pg_isready -q -h 127.0.0.1 -p 5432 || { log "Postgres did not start"; exit 1; }

# RabbitMQ
# A quorum queue's at-least-once dead-letter worker that finds its target exchange missing (as
# at node start, before exchanges are recovered) waits for this confirm timeout before trying
# again: 180 s by default, which stalls retries after every broker restart. 5 s is plenty on
# one node. Written once; an operator's own advanced.config is left alone.
advanced=/etc/rabbitmq/advanced.config
dlx_timeout='{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 5000}]}'
if [ -d /etc/rabbitmq ] && [ ! -e "$advanced" ]; then
  log "setting the dead-letter confirm timeout to 5 s in $advanced"
  echo "[$dlx_timeout]." > "$advanced"
fi
if ! port_open 5672; then
  log "starting RabbitMQ"
  rabbitmq-server -detached || true
fi
for _ in $(seq 1 120); do port_open 5672 && break; sleep 0.5; done
port_open 5672 || { log "RabbitMQ did not start"; exit 1; }
rabbitmqctl -q await_startup >/dev/null 2>&1 || true
# At-least-once dead-lettering and quorum queues need these feature flags (on by default on a
# fresh 3.10 node; an upgraded node may have them off).
rabbitmqctl -q enable_feature_flag quorum_queue >/dev/null 2>&1 || true
rabbitmqctl -q enable_feature_flag stream_queue >/dev/null 2>&1 || true
# The running node takes the setting at once (the file applies from its next start).
if grep -q dead_letter_worker_publisher_confirm_timeout "$advanced" 2>/dev/null; then
  rabbitmqctl -q eval 'application:set_env(rabbit, dead_letter_worker_publisher_confirm_timeout, 5000).' >/dev/null 2>&1 || true
fi
log "Postgres and RabbitMQ are up"
