#!/usr/bin/env bash
# Shared by the benchmarks: runs the same load against two Warden configurations (A without a
# feature, B with it) in front of one mock upstream, alternating, and prints the medians and
# the difference. Usage (from the repository root, after a release build):
#
#   bench/compare.sh "LABEL A" FILE_A "LABEL B" FILE_B [warden-load args…]
#
# FILE_A/FILE_B hold extra TOML appended to a base config (a mock provider and model `bench`,
# and, unless FILE sets its own [limits], the default per-key request rate turned off: the
# load comes from one key). RUNS, SECONDS_PER and RATE come from the environment.
set -euo pipefail
LABEL_A=$1; EXTRA_A=$2; LABEL_B=$3; EXTRA_B=$4; shift 4
RUNS="${RUNS:-5}"; SECS="${SECONDS_PER:-10}"; RATE="${RATE:-500}"
BIN=target/release
WORK=$(mktemp -d)
cleanup() { kill "${MOCK_PID:-}" "${A_PID:-}" "${B_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN/warden-mock" 127.0.0.1:19931 >"$WORK/mock.log" 2>&1 & MOCK_PID=$!
for side in a b; do
  extra=$EXTRA_A; [ "$side" = b ] && extra=$EXTRA_B
  {
    printf '[providers.mock]\nbase_url = "http://127.0.0.1:19931/v1"\n[models.bench]\n'
    printf 'targets = [{ provider = "mock", model = "m" }]\n[store]\ndata_dir = "%s"\n' "$WORK/$side"
    grep -q '^\[limits\]' "$extra" || printf '[limits]\nrequests_per_minute = 0\n'
    cat "$extra"
  } > "$WORK/$side.toml"
done
KEY_A=$("$BIN/warden" --config "$WORK/a.toml" keys create --name bench 2>/dev/null)
KEY_B=$("$BIN/warden" --config "$WORK/b.toml" keys create --name bench 2>/dev/null)
RUST_LOG=warn "$BIN/warden" serve --config "$WORK/a.toml" --listen 127.0.0.1:19932 >"$WORK/a.log" 2>&1 & A_PID=$!
RUST_LOG=warn "$BIN/warden" serve --config "$WORK/b.toml" --listen 127.0.0.1:19933 >"$WORK/b.log" 2>&1 & B_PID=$!
for port in 19932 19933; do
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
a50=""; a99=""; b50=""; b99=""
for i in $(seq "$RUNS"); do
  r=$("$BIN/warden-load" http://127.0.0.1:19932/v1/chat/completions --key "$KEY_A" --rate "$RATE" --seconds "$SECS" "$@")
  a50+="$(field "$r" p50_us) "; a99+="$(field "$r" p99_us) "
  r=$("$BIN/warden-load" http://127.0.0.1:19933/v1/chat/completions --key "$KEY_B" --rate "$RATE" --seconds "$SECS" "$@")
  b50+="$(field "$r" p50_us) "; b99+="$(field "$r" p99_us) "
  echo "run $i done" >&2
done
python3 - "$a50" "$a99" "$b50" "$b99" "$LABEL_A" "$LABEL_B" "$RUNS" "$RATE" <<'PY'
import statistics as st, sys
a50, a99, b50, b99 = ([float(x) for x in v.split()] for v in sys.argv[1:5])
la, lb, runs, rate = sys.argv[5:]
m = st.median
print(f"## Gateway, {rate} req/s, medians of {runs} runs")
print("| | p50 | p99 |")
print("|---|---|---|")
print(f"| {la} | {m(a50):.0f} µs | {m(a99):.0f} µs |")
print(f"| {lb} | {m(b50):.0f} µs | {m(b99):.0f} µs |")
print(f"| added | {m(b50) - m(a50):.0f} µs | {m(b99) - m(a99):.0f} µs |")
PY
