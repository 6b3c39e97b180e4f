#!/usr/bin/env bash
# make units: two units of parley on this machine, as a hybrid deployment
# runs them on two sites:
#   onprem  app-id parley-onprem  components/units/onprem (PostgreSQL + RabbitMQ)
#   cloud   app-id parley-cloud   components/units/cloud  (Redis)
# Each parley launches its own daprd; both daprds load the shared route
# table (routes.yaml, keyPrefix none) and a resiliency policy for calls to
# the other unit. Needs PostgreSQL, RabbitMQ and Redis on their default
# ports (see the README's profiles). Ctrl-C stops both units.
#
# Environment: PARLEY_JWT_SECRET signs tokens on both units (a user signs
# in to either); UNITS_ONPREM_ADDR and UNITS_CLOUD_ADDR are where each
# serves (default 127.0.0.1:8081 and 127.0.0.1:8082).
set -euo pipefail
cd "$(dirname "$0")/../.."

onprem_addr=${UNITS_ONPREM_ADDR:-127.0.0.1:8081}
cloud_addr=${UNITS_CLOUD_ADDR:-127.0.0.1:8082}
secret=${PARLEY_JWT_SECRET:-units-development-secret-0123456789abcdef}
units=onprem=parley-onprem,cloud=parley-cloud
logs=$(mktemp -d -t parley-units-XXXXXX)

# What the unit components need on their servers before daprd starts: the
# configuration table of the on-prem unit, keyspace events for the cloud
# unit's configuration watches.
psql -q "postgres://postgres@127.0.0.1:5432/test?sslmode=disable" -f deploy/units/config.sql >/dev/null
redis-cli -h 127.0.0.1 -p 6379 config set notify-keyspace-events KEA >/dev/null

pids=()
stop() {
	trap - INT TERM EXIT
	for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
	wait || true
}
trap stop INT TERM EXIT

start() { # unit addr
	./bin/parley -backend dapr -sidecar launch -profile "units/$1" -app-id "parley-$1" -node-id "$1-1" \
		-unit "$1" -units "$units" -addr "$2" -dev-tokens -jwt-secret "$secret" -metrics-addr "" \
		-ready-file "$logs/$1.ready" -log-format json >"$logs/$1.log" 2>&1 &
	pids+=($!)
}
start onprem "$onprem_addr"
start cloud "$cloud_addr"

for u in onprem cloud; do
	for _ in $(seq 300); do
		[ -s "$logs/$u.ready" ] && break
		if ! kill -0 "${pids[0]}" 2>/dev/null || ! kill -0 "${pids[1]}" 2>/dev/null; then
			echo "a unit exited while starting; its log:" >&2
			tail -n 20 "$logs/onprem.log" "$logs/cloud.log" >&2
			exit 1
		fi
		sleep 0.1
	done
done

page() { echo "http://localhost:${1##*:}/"; }
cat <<MSG

  two units are up (Ctrl-C stops both):
    onprem  $(page "$onprem_addr")   PostgreSQL + RabbitMQ, app-id parley-onprem
    cloud   $(page "$cloud_addr")   Redis, app-id parley-cloud
  Sign in as one user on each page and chat: each conversation lives in the
  unit where it started. New conversations bind to the cloud unit once
  parley.units.bind_to is "cloud" in a unit's configuration store, e.g.
    redis-cli set parley.units.bind_to "cloud||$(date +%s)"        (the cloud unit)
    psql ... INSERT INTO parley_config VALUES ('parley.units.bind_to', 'cloud', '<a growing version>', NULL) ...   (onprem)
  Local mode (sends to a unit that is down are kept and replayed) is the
  setting parley.units.local_pending = "true", set the same way. An operator
  moves a conversation with POST /v1/admin/units/move (start the units with
  PARLEY_ADMIN_TOKEN set to open the operator API).
  Logs: $logs

MSG
wait -n "${pids[@]}" || true
