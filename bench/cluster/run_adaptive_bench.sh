#!/usr/bin/env bash
# Adaptive disaggregation figures for issue 24: one seeded workload that
# shifts in three phases (short prompts, long prompts, short again; each
# $N requests, seeded Poisson arrivals at $RATE/s, $OUT output tokens),
# run on two nodes in three configurations, all up for the whole run:
#   static    1 prefill + 1 decode node (--role prefill, --role decode);
#   colocated 2 --role both nodes, router --disagg never (each request
#             whole on one node: the same two processes and cores as the
#             others, so only the split differs);
#   adaptive  2 --role flexible nodes starting as $START_P and $START_D
#             (prefill, both: the decode side also prefills where the stall
#             budget of its sequences allows, docs/internals/router.md),
#             router --disagg auto --rebalance-roles on
#             with the same SLOs as baton-bench's (--slo-ttft-ms $SLO_TTFT,
#             --slo-tpot-ms $SLO_TPOT, --rebalance-interval $INTERVAL,
#             --rebalance-dwell $DWELL).
# Each phase runs on static, colocated, then adaptive before the next
# phase, so the drift of a loaded machine falls on all three alike; the
# adaptive cluster keeps its roles from phase to phase. REPS=K (1) runs
# each phase K times on the three (its own seed each time, the order of
# the three rotated): goodput and the met fraction are pooled over the K
# runs (requests that met both SLOs over the runs' summed wall time:
# each run sends the same arrivals to the three, so the three pools hold
# the same requests), the latencies are medians of the runs' figures, and
# the phase line also shows each run's ratio. After each of its
# phases `batonctl events` (the moves and why) goes to stderr.
# Prints per config and phase: goodput under both SLOs (req/s), SLO met
# fraction, TTFT and TPOT p50/p90, errors; its last line is
#   adaptive-bench: worst phase adaptive/best-other goodput R
# (R = min over phases of adaptive / max(static, colocated); 1 for a
# phase where none of the three met the SLOs, and for one where every
# request met them on adaptive and on the best other: the goodputs then
# differ only by when the last answer came).
# The daemons start directly (three clusters side by side, each router
# with its own flags), without a kvstore or cluster tokens, over UCX shm.
#   bench/cluster/run_adaptive_bench.sh BUILD_DIR
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,32p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BUILD=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck disable=SC2034 # LOCAL and NAME are read by bench_lib.sh
LOCAL=$ROOT/deploy/local/baton-local
BENCH=$BUILD/bench/cluster/baton-bench
CTL=$BUILD/cli/batonctl
N=${N:-24} RATE=${RATE:-2} OUT=${OUT:-16} REPS=${REPS:-1}
SHORT_P=${SHORT_P:-32} LONG_P=${LONG_P:-1024}
SLO_TTFT=${SLO_TTFT:-800} SLO_TPOT=${SLO_TPOT:-25}
INTERVAL=${INTERVAL:-2s} DWELL=${DWELL:-4s}
START_P=${START_P:-prefill} START_D=${START_D:-both}
for x in "$BENCH" "$CTL" "$BUILD/tools/baton-mkmodel" "$BUILD/router/baton-router" \
         "$BUILD/prefill_node/baton-prefill" "$BUILD/decode_node/baton-decode"; do
  [ -x "$x" ] || { echo "run_adaptive_bench: $x is not built" >&2; exit 1; }
done

# shellcheck disable=SC2034
NAME=adaptive-bench
# shellcheck source=bench_lib.sh source-path=SCRIPTDIR
. "$ROOT/bench/cluster/bench_lib.sh"
stop_daemons() { # the daemons started here, by their pids
  local pid
  [ -f "$TMP/pids" ] || return 0
  while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$TMP/pids"
  while read -r pid; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done <"$TMP/pids"
}
trap 'stop_daemons; cleanup' EXIT
export UCX_TLS=${UCX_TLS:-posix,sysv,cma,self}

MODEL=$TMP/models/builtin
"$BUILD/tools/baton-mkmodel" builtin --max-pos 4096 --out "$MODEL" >/dev/null
MODEL_NAME=builtin

PORTS=""
start() { # name, then the command: waits for its "grpc_port=P http_port=Q"
  local name=$1 pid; shift
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" &
  pid=$!
  echo "$pid" >>"$TMP/pids"
  for _ in $(seq 1 600); do
    PORTS=$(grep -m1 '^grpc_port=' "$TMP/$name.out" 2>/dev/null || true)
    [ -n "$PORTS" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run_adaptive_bench: $name did not start; see $TMP/$name.log" >&2
  tail -5 "$TMP/$name.log" >&2 || true
  return 1
}
port_of() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" <<<"$PORTS"; }

up() { # config, router flags, then "--" and each node as "exe:flags"
  local c=$1 rflags=() k=0 spec; shift
  while [ "$1" != "--" ]; do rflags+=("$1"); shift; done
  shift
  start "$c-router" "$BUILD/router/baton-router" --model "$MODEL" --grpc-port 0 \
    --http-port 0 --heartbeat 200ms --queue-timeout 120s ${rflags[@]+"${rflags[@]}"}
  printf -v "GRPC_$c" '%s' "ipv4:127.0.0.1:$(port_of grpc_port)"
  printf -v "URL_$c" '%s' "http://127.0.0.1:$(port_of http_port)"
  local g="GRPC_$c" u="URL_$c"
  for spec in "$@"; do
    k=$((k + 1))
    # shellcheck disable=SC2086 # the node's flags are words
    start "$c-node$k" "$BUILD/${spec%%:*}" --model "$MODEL" --router "${!g}" \
      --grpc-port 0 --http-port 0 --threads 1 --node-id "$c-$k" ${spec#*:}
  done
  for k in $(seq 1 300); do
    if curl -sf "${!u}/readyz" >/dev/null 2>&1 &&
       [ "$("$CTL" --router "${!g}" --json nodes 2>/dev/null |
            /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["nodes"]))' \
            2>/dev/null)" = "$#" ]; then
      return 0
    fi
    sleep 0.1
  done
  echo "run_adaptive_bench: $c never became ready" >&2
  return 1
}

P=prefill_node/baton-prefill D=decode_node/baton-decode
up static -- "$P:--role prefill" "$D:--role decode"
up colo --disagg never -- "$D:--role both" "$D:--role both"
up adaptive --disagg auto --rebalance-roles on --slo-ttft-ms "$SLO_TTFT" \
  --slo-tpot-ms "$SLO_TPOT" --rebalance-interval "$INTERVAL" \
  --rebalance-dwell "$DWELL" -- \
  "$P:--role flexible --start-role $START_P" "$D:--role flexible --start-role $START_D"
CONFIGS="static colo adaptive"
# shellcheck disable=SC2154 # URL_* and GRPC_* are set by up (printf -v)
echo "== up: static $URL_static, colocated $URL_colo, adaptive $URL_adaptive" >&2

bench() { # config, then baton-bench flags
  local u="URL_$1"; shift
  "$BENCH" --url "${!u}" --model "$MODEL_NAME" --json --timeout 120s \
    --deadline 4m --slo-ttft "$SLO_TTFT" --slo-tpot "$SLO_TPOT" "$@" || true
}

# one request each first: nothing of the measured runs pays for a first
# connection or a cold page
for c in $CONFIGS; do
  bench "$c" --requests 2 --prompt-tokens "$SHORT_P" --output-tokens 2 --seed 999 >/dev/null
done

PHASES="1:$SHORT_P 2:$LONG_P 3:$SHORT_P"
for ph in $PHASES; do
  for rep in $(seq 1 "$REPS"); do
    # shellcheck disable=SC2086 # the config names are words
    set -- $CONFIGS
    for _ in $(seq 2 "$rep"); do set -- "${@:2}" "$1"; done   # rotated
    # a new seed each time: the same prompts again would be cache hits
    seed=$(( ${ph%%:*} + 100 * (rep - 1) ))
    for c in "$@"; do
      bench "$c" --requests "$N" --rate "$RATE" --prompt-tokens "${ph#*:}" \
        --output-tokens "$OUT" --seed "$seed" >"$TMP/$c-${ph%%:*}-$rep.json"
    done
  done
  echo "   phase ${ph%%:*} (prompt ${ph#*:}) measured; adaptive's events:" >&2
  # shellcheck disable=SC2154
  "$CTL" --router "$GRPC_adaptive" events >&2 || true
  "$CTL" --router "$GRPC_adaptive" nodes >&2 || true
done
curl -sf "$URL_adaptive/metrics" | grep -E '^baton_router_(disagg_decisions|role_moves)_total' >&2 || true

/usr/bin/python3 - "$TMP" "$CONFIGS" "$PHASES" "$N" "$RATE" "$OUT" "$SLO_TTFT" "$SLO_TPOT" \
  "$REPS" <<'PY'
import json, statistics, sys
tmp, configs, phases = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
n, rate, out, slo_ttft, slo_tpot = sys.argv[4:9]
reps = int(sys.argv[9])
print("adaptive benchmark: %s requests per phase, Poisson %s/s, %s output tokens, "
      "SLO TTFT <= %s ms and TPOT <= %s ms%s" % (
          n, rate, out, slo_ttft, slo_tpot,
          "; %d runs per phase (goodput pooled, latencies medians)" % reps
          if reps > 1 else ""))


def load(c, k):
    """The phase's result over the repetitions: goodput and the met
    fraction pooled (a median of goodputs would set one run's workload
    against another's: each run has its own arrivals, so its own span),
    the latencies the median of the runs' figures; and each run's
    goodput."""
    runs = []
    for rep in range(1, reps + 1):
        try:
            j = json.load(open("%s/%s-%s-%d.json" % (tmp, c, k, rep)))
        except (OSError, ValueError):
            return None
        if not j or "ttft_ms" not in j:
            return None
        runs.append(j)
    med = statistics.median
    met_n = sum(j["goodput_req_s"] * j["wall_s"] for j in runs)
    wall = sum(j["wall_s"] for j in runs)
    sent = sum(j["requests"] for j in runs)
    return {"goodput_req_s": met_n / wall if wall > 0 else 0.0,
            "slo_both_met": met_n / sent if sent > 0 else 0.0,
            "runs": [j["goodput_req_s"] for j in runs],
            "ttft_ms": {q: med(j["ttft_ms"][q] for j in runs) for q in ("p50", "p90")},
            "tpot_ms": {q: med(j["tpot_ms"][q] for j in runs) for q in ("p50", "p90")},
            "errors": sum(j["errors"] for j in runs)}


print("%-9s %-12s %9s %6s %9s %9s %9s %9s %6s" % (
    "config", "phase", "goodput", "met", "ttft p50", "ttft p90", "tpot p50",
    "tpot p90", "errors"))
good, met, runs = {}, {}, {}
for ph in phases:
    k, p = ph.split(":")
    for c in configs:
        j = load(c, k)
        if j is None:
            print("%-9s %-12s   (no result)" % (c, "%s: %s tok" % (k, p)))
            good[(c, k)] = met[(c, k)] = 0.0
            runs[(c, k)] = [0.0] * reps
            continue
        good[(c, k)] = j["goodput_req_s"]
        met[(c, k)] = j["slo_both_met"]
        runs[(c, k)] = j["runs"]
        print("%-9s %-12s %9.3f %5.0f%% %9.1f %9.1f %9.2f %9.2f %6d" % (
            c, "%s: %s tok" % (k, p), j["goodput_req_s"], 100 * j["slo_both_met"],
            j["ttft_ms"]["p50"], j["ttft_ms"]["p90"], j["tpot_ms"]["p50"],
            j["tpot_ms"]["p90"], j["errors"]))
ratios = []
for ph in phases:
    k = ph.split(":")[0]
    best = max(good[("static", k)], good[("colo", k)])
    # no request met both SLOs anywhere: adaptive is no worse (a tie, 1)
    r = good[("adaptive", k)] / best if best > 0 else 1.0
    # every request met both SLOs, on adaptive and on the best other: a
    # tie (1); the goodputs then differ only by when the last answer came,
    # within the SLOs
    other = "static" if good[("static", k)] >= good[("colo", k)] else "colo"
    tie = best > 0 and r < 1 and met[("adaptive", k)] >= 1.0 and \
        met[(other, k)] >= 1.0
    ratios.append(1.0 if tie else r)
    each = ""
    if reps > 1:
        each = "; each run %s" % " ".join(
            "%.3f" % (a / max(s_, c_)) if max(s_, c_) > 0 else "-"
            for a, s_, c_ in zip(runs[("adaptive", k)], runs[("static", k)],
                                 runs[("colo", k)]))
    print("phase %s: adaptive / best other %.3f%s, adaptive / colocated %s%s" % (
        k, r, " (a tie: every request met both SLOs)" if tie
        else "" if best > 0 or good[("adaptive", k)] > 0
        else " (no config met the SLOs)",
        "%.3f" % (good[("adaptive", k)] / good[("colo", k)])
        if good[("colo", k)] > 0 else "n/a", each))
print("adaptive-bench: worst phase adaptive/best-other goodput %.3f" % min(ratios))
PY
