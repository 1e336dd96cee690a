#!/usr/bin/env bash
# Validates baton-sim against the real cluster on this machine: fits the
# cost functions (bench/sim/fit.sh's loads, or SIM_COST=FILE to reuse a
# fit), then runs each workload on a real local cluster with baton-bench
# and through baton-sim with the same options (the same seeded arrivals,
# lengths and prompts), colocated (1 node, role both) and disaggregated
# (1 prefill + 1 decode, UCX shm), both with a kvstore:
#   trace    the conversation trace at its timestamps (TRACE_N requests,
#            TRACE_SPEED times faster, lengths scaled by BLOCK_TOKENS/512)
#   low      Poisson at RATE_LO requests/s
#   high     Poisson at RATE_HI requests/s
# and prints simulated / measured for TTFT p50 and p90, TPOT p50 and
# throughput (output tokens/s). The last line reads
#   sim-validate: worst ratio R (K of N within LO-HI)
# and the exit status is 0 only when every ratio is within [LO, HI]
# (default 0.85-1.15; --short: fewer requests and 0.1-10, the version
# `make test` runs as the meson test sim/validate).
#   bench/sim/validate.sh BUILD_DIR [--short]
# Knobs: SIM_COST, TRACE_N, TRACE_SPEED, RATE_LO, RATE_HI, POISSON_N,
# PROMPT (a length distribution), OUTPUT, LO, HI, SIM_VALIDATE_OUT (keep
# the reports and plots there).
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BUILD=$(cd "$1" && pwd)
SHORT=0
[ "${2:-}" = --short ] && SHORT=1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOCAL=$ROOT/deploy/local/baton-local
BENCH=$BUILD/bench/cluster/baton-bench
SIM=$BUILD/bench/sim/baton-sim
TRACE=${TRACE:-$ROOT/../shared/data/traces/conversation_trace.jsonl}
# sized for a small shared CPU machine: the builtin model prefills a
# 1000-token prompt in seconds there
if [ $SHORT = 1 ]; then
  TRACE_N=${TRACE_N:-16} POISSON_N=${POISSON_N:-12} FIT_REPEATS=${FIT_REPEATS:-1}
  LO=${LO:-0.1} HI=${HI:-10}
else
  TRACE_N=${TRACE_N:-40} POISSON_N=${POISSON_N:-30} FIT_REPEATS=${FIT_REPEATS:-3}
  LO=${LO:-0.85} HI=${HI:-1.15}
fi
TRACE_SPEED=${TRACE_SPEED:-2} BLOCK_TOKENS=${BLOCK_TOKENS:-2} MAX_OUTPUT=${MAX_OUTPUT:-8}
RATE_LO=${RATE_LO:-0.5} RATE_HI=${RATE_HI:-1.5}
PROMPT=${PROMPT:-uniform:16:128} OUTPUT=${OUTPUT:-uniform:4:16}
KV_DRAM=256M
for x in "$BENCH" "$SIM" "$BUILD/tools/baton-mkmodel" "$BUILD/cli/batonctl"; do
  [ -x "$x" ] || { echo "sim-validate: $x is not built" >&2; exit 1; }
done
[ -r "$TRACE" ] || { echo "sim-validate: cannot read $TRACE" >&2; exit 1; }

NAME=sim-validate
. "$ROOT/bench/cluster/bench_lib.sh"
. "$ROOT/bench/sim/sim_lib.sh"
OUTDIR=${SIM_VALIDATE_OUT:-$TMP/out}
mkdir -p "$OUTDIR"

MODEL=$TMP/models/builtin
"$BUILD/tools/baton-mkmodel" builtin --max-pos 4096 --out "$MODEL" >/dev/null
sim_up colo "$MODEL" --colocated --kvstore-dram "$KV_DRAM"
sim_up disagg "$MODEL" --prefill 1 --decode 1 --ucx-tls shm --kvstore-dram "$KV_DRAM"

COST=${SIM_COST:-}
if [ -z "$COST" ]; then
  COST=$OUTDIR/cost.json
  echo "== fitting the cost functions ($FIT_REPEATS runs per point)" >&2
  "$SIM" fit --url-colocated "$URL_colo" --url-disagg "$URL_disagg" \
    --model "$MODEL_NAME" --bench "$BENCH" --ctl "$BUILD/cli/batonctl" \
    --grpc "$GRPC_colo" --transport shm --fit-repeats "$FIT_REPEATS" \
    $(sim_shape colo "$MODEL") --out "$COST" 2>"$OUTDIR/fit.log" ||
    { cat "$OUTDIR/fit.log" >&2; exit 1; }
fi

workload() { # name: the workload flags both programs take
  case $1 in
    trace) echo --trace "$TRACE" --trace-requests "$TRACE_N" \
             --trace-speed "$TRACE_SPEED" --block-tokens "$BLOCK_TOKENS" \
             --max-output "$MAX_OUTPUT" ;;
    low) echo --requests "$POISSON_N" --rate "$RATE_LO" --prompt-tokens "$PROMPT" \
           --output-tokens "$OUTPUT" --seed 11 ;;
    high) echo --requests "$POISSON_N" --rate "$RATE_HI" --prompt-tokens "$PROMPT" \
            --output-tokens "$OUTPUT" --seed 12 ;;
  esac
}

for w in trace low high; do
  for m in colo disagg; do
    url="URL_$m"
    # shellcheck disable=SC2046
    "$BENCH" --url "${!url}" --model "$MODEL_NAME" --json --timeout 120s \
      --deadline 9m --title "$w $m measured" --out "$(mkdir -p "$OUTDIR/$w-$m-real" && echo "$OUTDIR/$w-$m-real")" \
      $(workload $w) >"$OUTDIR/$w-$m-real.json" || true
    if [ $m = colo ]; then nodes=(--colocated 1); else nodes=(--prefill 1 --decode 1); fi
    # shellcheck disable=SC2046
    "$SIM" run --cost "$COST" "${nodes[@]}" --transport shm --one-host \
      --kvstore-size "$KV_DRAM" --json --title "$w $m simulated" \
      --out "$(mkdir -p "$OUTDIR/$w-$m-sim" && echo "$OUTDIR/$w-$m-sim")" \
      $(workload $w) >"$OUTDIR/$w-$m-sim.json"
    echo "   $w $m: measured and simulated" >&2
  done
done
if command -v gnuplot >/dev/null 2>&1; then
  for w in trace low high; do
    "$ROOT/bench/workload/plot.sh" cdf "$OUTDIR/$w-cdf.png" \
      "colocated-measured=$OUTDIR/$w-colo-real" "colocated-simulated=$OUTDIR/$w-colo-sim" \
      "disaggregated-measured=$OUTDIR/$w-disagg-real" \
      "disaggregated-simulated=$OUTDIR/$w-disagg-sim" || true
  done
fi

/usr/bin/python3 - "$OUTDIR" "$LO" "$HI" <<'PY'
import json, math, sys
d, lo, hi = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows, ratios = [], []
print("| workload | cluster | metric | measured | simulated | sim / measured |")
print("|---|---|---|---:|---:|---:|")
for w in ("trace", "low", "high"):
    for m in ("colo", "disagg"):
        try:
            real = json.load(open(f"{d}/{w}-{m}-real.json"))
            sim = json.load(open(f"{d}/{w}-{m}-sim.json"))
        except (OSError, ValueError):
            real, sim = {}, {}
        for name, get in (("TTFT p50 ms", lambda j: j["ttft_ms"]["p50"]),
                          ("TTFT p90 ms", lambda j: j["ttft_ms"]["p90"]),
                          ("TPOT p50 ms", lambda j: j["tpot_ms"]["p50"]),
                          ("output tok/s", lambda j: j["output_tok_s"])):
            try:
                a, b = get(real), get(sim)
            except KeyError:
                a, b = 0, 0
            r = b / a if a > 0 else float("inf")
            ratios.append(r)
            cl = "colocated" if m == "colo" else "disaggregated"
            print(f"| {w} | {cl} | {name} | {a:.2f} | {b:.2f} | {r:.3f} |")
        if real.get("errors"):
            print(f"  ({w} {m}: {real['errors']} measured requests failed: "
                  f"{real.get('first_error', '')})")
ok = sum(1 for r in ratios if lo <= r <= hi)
worst = max(ratios, key=lambda r: abs(math.log(r)) if 0 < r < float("inf") else float("inf"))
print(f"sim-validate: worst ratio {worst:.3f} ({ok} of {len(ratios)} within {lo:.2f}-{hi:.2f})")
sys.exit(0 if ok == len(ratios) else 1)
PY
