#!/usr/bin/env bash
# Durable agents: (1) the journal on the real SQLite store (step commit latency, steps per
# second with 32 writers, waking = the lease takeover), cargo bench; (2) the memory that
# AGENTS (10,000) hibernated agents cost a running `warden serve`: one message to each of
# them, wait until every instance has left memory, and compare the process's RSS with its RSS
# after a warm-up of 500 other agents. Medians of RUNS (3) runs.
#
#   bench/agents.sh           # AGENTS=10000 RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."
N="${AGENTS:-10000}"; RUNS="${RUNS:-3}"

echo "## Agent journal (cargo bench -p warden-store --bench journal), medians of 3 runs"
cargo bench --quiet -p warden-store --bench journal 2>/dev/null | grep '^|'
echo

cargo build --release --quiet -p warden -p warden-testkit --bins
BIN=target/release
WORK=$(mktemp -d)
cleanup() { kill "${MOCK_PID:-}" "${W_PID:-}" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
"$BIN/warden-mock" 127.0.0.1:19941 >"$WORK/mock.log" 2>&1 & MOCK_PID=$!
rss() { awk '/VmRSS/ {print $2}' "/proc/$W_PID/status"; }
live() { curl -s 127.0.0.1:19942/metrics | awk '/^warden_agent_wakeups_total/ {w=$2} /^warden_agent_hibernations_total/ {h=$2} END {print w - h}'; }
deltas=""; befores=""; afters=""
for run in $(seq "$RUNS"); do
  rm -rf "$WORK/data"
  cat >"$WORK/w.toml" <<TOML
[server]
agent_idle = "2s"
[store]
data_dir = "$WORK/data"
[providers.mock]
base_url = "http://127.0.0.1:19941/v1"
[models.bench]
targets = [{ provider = "mock", model = "m" }]
# One key drives every agent: the default 600 model calls per minute per key is off.
[limits]
requests_per_minute = 0
[agents.warm]
system_prompt = "Answer briefly."
model = "bench"
[agents.bench]
system_prompt = "Answer briefly."
model = "bench"
TOML
  KEY=$("$BIN/warden" --config "$WORK/w.toml" keys create --name bench 2>/dev/null)
  RUST_LOG=warn "$BIN/warden" serve --config "$WORK/w.toml" --listen 127.0.0.1:19942 >"$WORK/w.log" 2>&1 & W_PID=$!
  for _ in $(seq 100); do curl -sf 127.0.0.1:19942/healthz >/dev/null && break; sleep 0.1; done
  "$BIN/warden-load" http://127.0.0.1:19942/v1/agents/warm --key "$KEY" --agents 500 --concurrency 32 >/dev/null
  for _ in $(seq 60); do [ "$(live)" = "0" ] && break; sleep 0.5; done
  before=$(rss)
  r=$("$BIN/warden-load" http://127.0.0.1:19942/v1/agents/bench --key "$KEY" --agents "$N" --concurrency 32)
  ok=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['ok'])" "$r")
  [ "$ok" = "$N" ] || { echo "only $ok of $N agents answered: $r" >&2; exit 1; }
  for _ in $(seq 60); do [ "$(live)" = "0" ] && break; sleep 0.5; done
  [ "$(live)" = "0" ] || { echo "instances still in memory: $(live)" >&2; exit 1; }
  after=$(rss)
  befores+="$before "; afters+="$after "; deltas+="$((after - before)) "
  kill "$W_PID"; wait "$W_PID" 2>/dev/null || true
  echo "run $run done" >&2
done
python3 - "$befores" "$afters" "$deltas" "$N" "$RUNS" <<'PY'
import statistics as st, sys
b, a, d = ([int(x) for x in v.split()] for v in sys.argv[1:4])
n, runs = int(sys.argv[4]), sys.argv[5]
m = st.median
print(f"## {n} hibernated agents in a running warden serve, medians of {runs} runs")
print("| RSS after warm-up | RSS with the agents hibernated | added | per agent |")
print("|---|---|---|---|")
print(f"| {m(b)/1024:.1f} MB | {m(a)/1024:.1f} MB | {m(d)/1024:.1f} MB | {m(d)*1024/n:.0f} bytes |")
PY
