#!/usr/bin/env bash
# Gateway overhead: the same chat request sent to the mock upstream directly and through
# Warden, at a fixed rate (latency) and at saturation (throughput), non-streaming and
# streaming. Prints medians over RUNS runs, the added latency, the throughput ratio, and
# Warden's CPU time per request (from /proc, the figure that survives a noisy machine).
#
#   bench/proxy.sh            # RUNS=5 SECONDS_PER=10 RATE=500 CONCURRENCY=32
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"; SECS="${SECONDS_PER:-10}"; RATE="${RATE:-500}"; CONC="${CONCURRENCY:-32}"
MOCK_PORT="${MOCK_PORT:-19901}"; WARDEN_PORT="${WARDEN_PORT:-19787}"

cargo build --release --quiet -p warden -p warden-testkit --bins
BIN=target/release
WORK=$(mktemp -d)
cleanup() { kill "${MOCK_PID:-}" "${WARDEN_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

"$BIN/warden-mock" "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 & MOCK_PID=$!
cat >"$WORK/warden.toml" <<TOML
[server]
log_format = "json"
[providers.mock]
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
api_key_env = "MOCK_KEY"
[models.bench]
targets = [{ provider = "mock", model = "mock-large" }]
# One key sends all the load: the default 600 requests per minute per key is off.
[limits]
requests_per_minute = 0
TOML
export WARDEN_DATA_DIR="$WORK/data"
KEY=$("$BIN/warden" keys create --name bench 2>/dev/null)
MOCK_KEY=sk-bench RUST_LOG=warn "$BIN/warden" serve --config "$WORK/warden.toml" \
  --listen "127.0.0.1:$WARDEN_PORT" >"$WORK/warden.log" 2>&1 & WARDEN_PID=$!
for _ in $(seq 100); do curl -sf "127.0.0.1:$WARDEN_PORT/healthz" >/dev/null && break; sleep 0.1; done

DIRECT="http://127.0.0.1:$MOCK_PORT/v1/chat/completions"
PROXY="http://127.0.0.1:$WARDEN_PORT/v1/chat/completions"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$WARDEN_PID/stat"; }
TICK=$(getconf CLK_TCK)

run() { "$BIN/warden-load" "$@" --seconds "$SECS"; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }

declare -A S
for i in $(seq "$RUNS"); do
  for mode in plain stream; do
    flag=""; [ "$mode" = stream ] && flag="--stream"
    d=$(run "$DIRECT" --rate "$RATE" $flag)
    p=$(run "$PROXY" --key "$KEY" --rate "$RATE" $flag)
    S[$mode.d50]+="$(field "$d" p50_us) "; S[$mode.p50]+="$(field "$p" p50_us) "
    S[$mode.d99]+="$(field "$d" p99_us) "; S[$mode.p99]+="$(field "$p" p99_us) "
    S[$mode.err]+="$(( $(field "$d" errors) + $(field "$p" errors) )) "
    d=$(run "$DIRECT" --concurrency "$CONC" $flag)
    c0=$(cpu_ticks)
    p=$(run "$PROXY" --key "$KEY" --concurrency "$CONC" $flag)
    c1=$(cpu_ticks)
    S[$mode.drps]+="$(field "$d" rps) "; S[$mode.prps]+="$(field "$p" rps) "
    S[$mode.cpu]+="$(python3 -c "print(($c1-$c0)/$TICK*1e6/$(field "$p" ok))") "
    echo "run $i $mode done" >&2
  done
done

python3 - "$RUNS" "$RATE" "$CONC" <<PY
import statistics as st, sys
S = {k: [float(x) for x in v.split()] for k, v in {$(for k in "${!S[@]}"; do printf '"%s": "%s", ' "$k" "${S[$k]}"; done)}.items()}
runs, rate, conc = sys.argv[1:]
m = lambda k: st.median(S[k])
print(f"medians of {runs} runs; fixed rate {rate} req/s; saturation with {conc} connections")
print("| mode | direct p50 | Warden p50 | added p50 | direct p99 | Warden p99 | added p99 | direct req/s | Warden req/s | ratio | Warden CPU/request | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for mode in ("plain", "stream"):
    a50 = (m(f"{mode}.p50") - m(f"{mode}.d50")) / 1000
    a99 = (m(f"{mode}.p99") - m(f"{mode}.d99")) / 1000
    ratio = m(f"{mode}.prps") / m(f"{mode}.drps")
    print(f"| {mode} | {m(f'{mode}.d50')/1000:.3f} ms | {m(f'{mode}.p50')/1000:.3f} ms | {a50:.3f} ms "
          f"| {m(f'{mode}.d99')/1000:.3f} ms | {m(f'{mode}.p99')/1000:.3f} ms | {a99:.3f} ms "
          f"| {m(f'{mode}.drps'):.0f} | {m(f'{mode}.prps'):.0f} | {ratio:.2f} | {m(f'{mode}.cpu'):.0f} µs "
          f"| {int(sum(S[f'{mode}.err']))} |")
PY
