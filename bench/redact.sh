#!/usr/bin/env bash
# Redaction speed: (1) scan-and-mask throughput of the detectors on realistic prompts and
# time per byte on adversarial input; (2) the gateway's added latency for a 4 KB prompt with
# redaction on (the default) versus off (`[redaction] default = "allow"`), both at a fixed
# 500 req/s against the same mock, medians of RUNS runs.
#
#   bench/redact.sh            # RUNS=5 SECONDS_PER=10 RATE=500 PROMPT=4096
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"; SECS="${SECONDS_PER:-10}"; RATE="${RATE:-500}"; PROMPT="${PROMPT:-4096}"

echo "## Detector throughput (cargo bench -p warden-redact --bench throughput)"
cargo bench --quiet -p warden-redact --bench throughput 2>/dev/null | grep '^|'
echo

cargo build --release --quiet -p warden -p warden-testkit --bins
BIN=target/release
WORK=$(mktemp -d)
cleanup() { kill "${MOCK_PID:-}" "${ON_PID:-}" "${OFF_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN/warden-mock" 127.0.0.1:19911 >"$WORK/mock.log" 2>&1 & MOCK_PID=$!
base='[providers.mock]
base_url = "http://127.0.0.1:19911/v1"
[models.bench]
targets = [{ provider = "mock", model = "m" }]'
printf '%s\n' "$base" > "$WORK/on.toml"
printf '%s\n[redaction]\ndefault = "allow"\n' "$base" > "$WORK/off.toml"
export WARDEN_DATA_DIR="$WORK/data"
KEY=$("$BIN/warden" keys create --name bench 2>/dev/null)
RUST_LOG=warn "$BIN/warden" serve --config "$WORK/on.toml" --listen 127.0.0.1:19912 >"$WORK/on.log" 2>&1 & ON_PID=$!
RUST_LOG=warn "$BIN/warden" serve --config "$WORK/off.toml" --listen 127.0.0.1:19913 >"$WORK/off.log" 2>&1 & OFF_PID=$!
for port in 19912 19913; do
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
on=""; off=""; on99=""; off99=""
for i in $(seq "$RUNS"); do
  r=$("$BIN/warden-load" http://127.0.0.1:19913/v1/chat/completions --key "$KEY" --rate "$RATE" --seconds "$SECS" --prompt-bytes "$PROMPT")
  off+="$(field "$r" p50_us) "; off99+="$(field "$r" p99_us) "
  r=$("$BIN/warden-load" http://127.0.0.1:19912/v1/chat/completions --key "$KEY" --rate "$RATE" --seconds "$SECS" --prompt-bytes "$PROMPT")
  on+="$(field "$r" p50_us) "; on99+="$(field "$r" p99_us) "
  echo "run $i done" >&2
done
python3 - "$on" "$off" "$on99" "$off99" "$RUNS" "$RATE" "$PROMPT" <<'PY'
import statistics as st, sys
on, off, on99, off99 = ([float(x) for x in a.split()] for a in sys.argv[1:5])
runs, rate, prompt = sys.argv[5:]
print(f"## Gateway, {prompt}-byte prompt, {rate} req/s, medians of {runs} runs")
print("| | p50 | p99 |")
print("|---|---|---|")
print(f"| redaction off | {st.median(off):.0f} µs | {st.median(off99):.0f} µs |")
print(f"| redaction on | {st.median(on):.0f} µs | {st.median(on99):.0f} µs |")
print(f"| added by redaction | {st.median(on) - st.median(off):.0f} µs | {st.median(on99) - st.median(off99):.0f} µs |")
PY
