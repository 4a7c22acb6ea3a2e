# SyncRoot — everyday commands. `make run` and `make test` work on a fresh machine: they install
# and start Postgres and RabbitMQ if needed (scripts/services.sh).

.PHONY: config-table bench chaos chart convergence deny run test services unit conformance schemathesis openapi fmt lint ci clean-test-data sandbox

## run: start the CRM sandboxes (127.0.0.1:8091, :8092) and SyncRoot all-in-one (API, workers)
## on 127.0.0.1:8080; Ctrl-C stops both
run: services
	cargo build --release --workspace --bins
	bash scripts/run.sh target/release

## test: the whole test suite (unit, black-box, OpenAPI drift, sandbox conformance with the
## vendors' own clients, schemathesis fuzzing, the Helm chart check, cargo deny)
test: services unit conformance schemathesis chart deny

## deny: cargo deny against deny.toml: licenses, bans (backoff), sources (crates.io only), and
## RustSec advisories when the advisory database can be fetched (it says loudly when not;
## DENY_ADVISORY_DB_URL names a mirror). Builds cargo-deny into .cache/ on the first run.
deny:
	@echo "== $$(date -u +%H:%M:%S) make deny"
	bash scripts/deny.sh

## services: install and start Postgres and RabbitMQ if needed
services:
	@bash scripts/services.sh

unit:
	@echo "== $$(date -u +%H:%M:%S) make unit"
	cargo test --workspace

conformance:
	@echo "== $$(date -u +%H:%M:%S) make conformance"
	bash scripts/conformance.sh

schemathesis:
	@echo "== $$(date -u +%H:%M:%S) make schemathesis"
	bash scripts/schemathesis.sh

## chart: the Helm chart check (lint, render every scenario under Helm 4 and 3, validate the
## manifests, refuse invalid values, compare with golden renders, SYNCROOT_* names). After a
## deliberate template change: UPDATE_GOLDEN=1 make chart
chart:
	@echo "== $$(date -u +%H:%M:%S) make chart"
	bash scripts/chart-check.sh

## sandbox: run only the local HubSpot (127.0.0.1:8091) and Salesforce (127.0.0.1:8092) sandboxes
sandbox:
	cargo run --release -p syncroot-sandbox

## chaos: SyncRoot as separate processes under load while processes are SIGKILLed, RabbitMQ
## and Postgres restart and the CRM sandboxes fail; then checks nothing was lost or duplicated.
## Then a long two-way convergence run (`make convergence`, random seed printed).
## Restarts (and crashes) the shared services: run it alone. Knobs: CHAOS_SEED, CHAOS_LOAD_SECS,
## CHAOS_RATE, CHAOS_RACERS, CHAOS_SERVICE_FAULTS…
## (tests/chaos/main.rs), CONVERGENCE_SEED, CONVERGENCE_OPS. Leaves the services running.
chaos: services
	cargo build -p syncroot-sandbox
	cargo test --test chaos; status=$$?; bash scripts/services.sh; exit $$status
	$(MAKE) convergence

## convergence: a long two-way convergence run (API and both CRMs' UIs editing the same contacts,
## webhooks shuffled, duplicated and held back) with a random seed it prints; CONVERGENCE_SEED
## and CONVERGENCE_OPS choose. `make test` runs a short one with a fixed seed.
convergence: services
	CONVERGENCE_SEED=$${CONVERGENCE_SEED:-$$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')} \
	CONVERGENCE_OPS=$${CONVERGENCE_OPS:-1000} \
	cargo test --test it convergence -- --nocapture

## bench: end-to-end benchmark against the sandboxes: prints the measures and a PASS/MISS verdict
## per goal (docs/benchmarks.md), writes bench-results/latest.json, and exits 2 when a goal is
## missed. BENCH_REPORT_ONLY=1 only reports (exits 0 on a miss); BENCH_RECORD=1 appends the
## verdicts to docs/benchmarks.md. Sizes: BENCH_RUNS, BENCH_BURST… (benches/harness/mod.rs)
bench: services
	cargo build --release --workspace --bins
	cargo bench --bench e2e

## openapi: regenerate the committed spec from the code
openapi:
	cargo run --quiet -- openapi > openapi/openapi.json

## config-table: rewrite README.md's configuration table from src/config/keys.rs (a unit test
## fails while they differ)
config-table:
	bash scripts/readme-config-table.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --test chaos -- -D warnings

## ci: what CI runs
ci:
	bash .ci/run

## clean-test-data: drop databases and queues left by interrupted test and benchmark runs
clean-test-data: services
	bash scripts/clean-test-data.sh
