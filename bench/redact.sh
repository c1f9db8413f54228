#!/usr/bin/env bash
# Redaction speed: (1) scan-and-mask throughput of the detectors on realistic prompts and
# time per byte on adversarial input; (2) the gateway's added latency for a 4 KB prompt with
# redaction on (the default) versus off (`[redaction] default = "allow"`), both at a fixed
# 500 req/s against the same mock, medians of RUNS runs (bench/compare.sh).
#
#   bench/redact.sh            # RUNS=5 SECONDS_PER=10 RATE=500 PROMPT=4096
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT="${PROMPT:-4096}"

echo "## Detector throughput (cargo bench -p warden-redact --bench throughput)"
cargo bench --quiet -p warden-redact --bench throughput 2>/dev/null | grep '^|'
echo

cargo build --release --quiet -p warden -p warden-testkit --bins
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
: > "$WORK/on.toml"
printf '[redaction]\ndefault = "allow"\n' > "$WORK/off.toml"
bench/compare.sh "redaction off" "$WORK/off.toml" "redaction on, ${PROMPT}-byte prompt" "$WORK/on.toml" \
  --prompt-bytes "$PROMPT"
