#!/usr/bin/env bash
# Cost-control speed: (1) the in-process rate-limit and budget checks, without HTTP
# (target: under 5 µs each); (2) a cache hit through the whole pipeline (auth, redaction of a
# 4 KB prompt, rate limits, the lookup, a 4 KB answer restored for the request, the durable
# audit record) at a fixed 1,000 req/s, against the same requests answered by the mock with the
# cache off, medians of RUNS runs (bench/compare.sh). Target: hit p99 at most 1 ms.
#
#   bench/cost.sh             # RUNS=5 SECONDS_PER=10 RATE=1000
set -euo pipefail
cd "$(dirname "$0")/.."
export RATE="${RATE:-1000}"

echo "## In-process checks (cargo bench -p warden-gateway --bench checks)"
cargo bench --quiet -p warden-gateway --bench checks 2>/dev/null | grep '^|'
echo

cargo build --release --quiet -p warden -p warden-testkit --bins
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
LIMITS='[limits]
requests_per_minute = 10000000
tokens_per_minute = 10000000000
[limits.users]
requests_per_minute = 10000000'
printf '%s\n' "$LIMITS" > "$WORK/off.toml"
printf '%s\n[cache]\nenabled = true\n' "$LIMITS" > "$WORK/hit.toml"
bench/compare.sh "cache off (answered by the mock)" "$WORK/off.toml" "cache hit" "$WORK/hit.toml" \
  --prompt-bytes 4000
