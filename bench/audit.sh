#!/usr/bin/env bash
# Audit speed: (1) sustained records per second through the real writer with durable group
# commit; (2) the gateway's latency with the audit log on (the default: a durable record
# before each answer) versus off, both at a fixed 500 req/s against the same mock, medians of
# RUNS runs.
#
#   bench/audit.sh            # RUNS=5 SECONDS_PER=10 RATE=500
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"; SECS="${SECONDS_PER:-10}"; RATE="${RATE:-500}"

echo "## Audit writer (cargo bench -p warden-audit --bench throughput)"
cargo bench --quiet -p warden-audit --bench throughput 2>/dev/null | grep '^|'
echo

cargo build --release --quiet -p warden -p warden-testkit --bins
BIN=target/release
WORK=$(mktemp -d)
cleanup() { kill "${MOCK_PID:-}" "${ON_PID:-}" "${OFF_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN/warden-mock" 127.0.0.1:19921 >"$WORK/mock.log" 2>&1 & MOCK_PID=$!
base='[providers.mock]
base_url = "http://127.0.0.1:19921/v1"
[models.bench]
targets = [{ provider = "mock", model = "m" }]'
printf '%s\n[store]\ndata_dir = "%s"\n' "$base" "$WORK/on" > "$WORK/on.toml"
printf '%s\n[store]\ndata_dir = "%s"\n[audit]\nenabled = false\n' "$base" "$WORK/off" > "$WORK/off.toml"
KEY_ON=$("$BIN/warden" --config "$WORK/on.toml" keys create --name bench 2>/dev/null)
KEY_OFF=$("$BIN/warden" --config "$WORK/off.toml" keys create --name bench 2>/dev/null)
RUST_LOG=warn "$BIN/warden" serve --config "$WORK/on.toml" --listen 127.0.0.1:19922 >"$WORK/on.log" 2>&1 & ON_PID=$!
RUST_LOG=warn "$BIN/warden" serve --config "$WORK/off.toml" --listen 127.0.0.1:19923 >"$WORK/off.log" 2>&1 & OFF_PID=$!
for port in 19922 19923; do
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
on=""; off=""; on99=""; off99=""
for i in $(seq "$RUNS"); do
  r=$("$BIN/warden-load" http://127.0.0.1:19923/v1/chat/completions --key "$KEY_OFF" --rate "$RATE" --seconds "$SECS")
  off+="$(field "$r" p50_us) "; off99+="$(field "$r" p99_us) "
  r=$("$BIN/warden-load" http://127.0.0.1:19922/v1/chat/completions --key "$KEY_ON" --rate "$RATE" --seconds "$SECS")
  on+="$(field "$r" p50_us) "; on99+="$(field "$r" p99_us) "
  echo "run $i done" >&2
done
python3 - "$on" "$off" "$on99" "$off99" "$RUNS" "$RATE" <<'PY'
import statistics as st, sys
on, off, on99, off99 = ([float(x) for x in a.split()] for a in sys.argv[1:5])
runs, rate = sys.argv[5:]
print(f"## Gateway, {rate} req/s, medians of {runs} runs")
print("| | p50 | p99 |")
print("|---|---|---|")
print(f"| audit off | {st.median(off):.0f} µs | {st.median(off99):.0f} µs |")
print(f"| audit on (fsync always) | {st.median(on):.0f} µs | {st.median(on99):.0f} µs |")
print(f"| added by the audit log | {st.median(on) - st.median(off):.0f} µs | {st.median(on99) - st.median(off99):.0f} µs |")
PY
