#!/usr/bin/env bash
# Audit speed: (1) sustained records per second through the real writer with durable group
# commit; (2) the gateway's latency with the audit log on (the default: a durable record
# before each answer) versus off, both at a fixed 500 req/s against the same mock, medians of
# RUNS runs (bench/compare.sh).
#
#   bench/audit.sh            # RUNS=5 SECONDS_PER=10 RATE=500
set -euo pipefail
cd "$(dirname "$0")/.."

echo "## Audit writer (cargo bench -p warden-audit --bench throughput)"
cargo bench --quiet -p warden-audit --bench throughput 2>/dev/null | grep '^|'
echo

cargo build --release --quiet -p warden -p warden-testkit --bins
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
: > "$WORK/on.toml"
printf '[audit]\nenabled = false\n' > "$WORK/off.toml"
bench/compare.sh "audit off" "$WORK/off.toml" "audit on (fsync always)" "$WORK/on.toml"
