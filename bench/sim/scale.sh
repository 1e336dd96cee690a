#!/usr/bin/env bash
# baton-sim at scale: NODES nodes (PREFILL of them prefill-only, the rest
# decode-only; 255 to a router) serving REQUESTS Poisson requests at RATE
# per second with the H100 / Llama-3-8B-shaped cost file
# (bench/sim/costs/h100-llama3-8b.json, derived in docs/internals/sim.md).
# The prompts are random (no shared prefixes), so the nodes' prefix caches
# are off: they would hold nothing reusable and cost memory. Prints the
# report, then a last line
#   sim-scale: NODES nodes, REQUESTS requests in S s
# (S: the wall-clock seconds of the run, target under 60).
#   bench/sim/scale.sh BUILD_DIR
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BUILD=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SIM=$BUILD/bench/sim/baton-sim
NODES=${NODES:-1000} PREFILL=${PREFILL:-400} REQUESTS=${REQUESTS:-1000000}
RATE=${RATE:-20000} PROMPT=${PROMPT:-uniform:128:1024} OUTPUT=${OUTPUT:-uniform:16:256}
[ -x "$SIM" ] || { echo "sim-scale: $SIM is not built" >&2; exit 1; }

start=$(date +%s.%N)
"$SIM" run --cost "$ROOT/bench/sim/costs/h100-llama3-8b.json" \
  --prefill "$PREFILL" --decode $((NODES - PREFILL)) --transport rdma \
  --requests "$REQUESTS" --rate "$RATE" --prompt-tokens "$PROMPT" \
  --output-tokens "$OUTPUT" --prefix-cache false --slo-ttft 500 --slo-tpot 50
end=$(date +%s.%N)
awk -v n="$NODES" -v r="$REQUESTS" -v a="$start" -v b="$end" \
  'BEGIN { printf "sim-scale: %d nodes, %d requests in %.1f s\n", n, r, b - a }'
