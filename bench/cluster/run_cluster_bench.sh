#!/usr/bin/env bash
# Cluster figures for issue 8: a colocated cluster (one --role both node)
# against a disaggregated one (1 prefill + 1 decode over UCX shm), both
# started by deploy/local/baton-local with the same model, measured
# with baton-bench in this one run:
#   - TTFT for prompts of $TTFT_PROMPTS token ids (default 128 512 2048
#     8192; sequential requests, max_tokens 1, alternating between the two
#     clusters, the median of $TTFT_N each after one warm-up request);
#   - throughput under $TP_C concurrent streams of $TP_O output tokens;
#   - $MANY_C concurrent streams with small outputs, all must complete.
# Prints TTFT disaggregated / colocated per prompt length (target <= 1.05 at
# 2048) and throughput disaggregated / colocated.
#   bench/cluster/run_cluster_bench.sh BUILD_DIR
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BUILD=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOCAL=$ROOT/deploy/local/baton-local
BENCH=$BUILD/bench/cluster/baton-bench
TTFT_N=${TTFT_N:-5}
TTFT_PROMPTS=${TTFT_PROMPTS:-128 512 2048 8192}
TP_N=${TP_N:-64} TP_C=${TP_C:-16} TP_O=${TP_O:-64} TP_P=${TP_P:-128}
MANY_C=${MANY_C:-200} MANY_O=${MANY_O:-4} MANY_P=${MANY_P:-32}
for x in "$BENCH" "$BUILD/tools/baton-mkmodel"; do
  [ -x "$x" ] || { echo "run_cluster_bench: $x is not built" >&2; exit 1; }
done

NAME=cluster-bench
. "$ROOT/bench/cluster/bench_lib.sh"

MODEL=$TMP/models/builtin
"$BUILD/tools/baton-mkmodel" builtin --max-pos 16384 --out "$MODEL" >/dev/null

up() { # mode, then baton-local up flags; sets URL_<mode> and MODEL_NAME
  local mode=$1; shift
  BUILD=$BUILD BATON_RUN_DIR=$TMP/run-$mode "$LOCAL" up "$@" --model "$MODEL" \
    --http-port 0 --grpc-port 0 >"$TMP/$mode-up.log" 2>&1 ||
    { cat "$TMP/$mode-up.log" >&2; return 1; }
  printf -v "URL_$mode" '%s' "$(field "$TMP/run-$mode/endpoints.json" 'j["http"]')"
  MODEL_NAME=$(field "$TMP/run-$mode/endpoints.json" 'j["model"]')
}

bench() { # mode, then baton-bench flags
  local mode=$1; shift
  local url="URL_$mode"
  "$BENCH" --url "${!url}" --model "$MODEL_NAME" --json --timeout 120s \
    --deadline 9m "$@" || true
}

# Both clusters stay up for the whole run (an idle one costs little) so
# that TTFT requests alternate between them: on a loaded machine the drift
# of the load then falls on both sides alike.
up colo --colocated
up disagg --prefill 1 --decode 1 --ucx-tls shm
echo "== colocated $URL_colo, disaggregated $URL_disagg" >&2
MODES="colo disagg"
for p in $TTFT_PROMPTS; do
  for m in $MODES; do
    bench "$m" --requests 1 --prompt-tokens "$p" --output-tokens 1 --seed 99 >/dev/null
  done
  for i in $(seq 1 "$TTFT_N"); do
    for m in $MODES; do
      bench "$m" --requests 1 --prompt-tokens "$p" --output-tokens 1 \
        --seed "$i" >"$TMP/$m-ttft-$p-$i.json"
    done
  done
  echo "   ttft p=$p measured" >&2
done
for m in $MODES; do
  bench "$m" --requests "$TP_N" --concurrency "$TP_C" --prompt-tokens "$TP_P" \
    --output-tokens "$TP_O" >"$TMP/$m-tp.json"
  echo "   throughput $m: $(field "$TMP/$m-tp.json" 'j["output_tok_s"]') tok/s" >&2
done
for m in $MODES; do
  bench "$m" --requests "$MANY_C" --concurrency "$MANY_C" \
    --prompt-tokens "$MANY_P" --output-tokens "$MANY_O" >"$TMP/$m-many.json"
  echo "   $MANY_C streams $m: $(field "$TMP/$m-many.json" 'j["ok"]') ok" >&2
done

/usr/bin/python3 - "$TMP" "$TTFT_N" "$TTFT_PROMPTS" <<'PY'
import json, statistics, sys
d = sys.argv[1]
def load(name):
    return json.load(open(f"{d}/{name}.json"))
def ratio(a, b):
    return f"{a / b:.3f}" if b > 0 else "n/a"
print(f"{'metric':<34}{'colocated':>12}{'disagg':>12}{'dis/colo':>10}")
n = int(sys.argv[2])
def ttft(mode, p):
    """median TTFT over the runs that succeeded, and the error count"""
    v, errs = [], 0
    for i in range(1, n + 1):
        try:
            j = load(f"{mode}-ttft-{p}-{i}")
        except (OSError, ValueError):
            j = {"ok": 0}
        if j["ok"] == 1:
            v.append(j["ttft_ms"]["p50"])
        else:
            errs += 1
    return (statistics.median(v) if v else 0.0), errs
for p in map(int, sys.argv[3].split()):
    (cv, ce), (xv, xe) = ttft("colo", p), ttft("disagg", p)
    note = "  (target <= 1.05)" if p == 2048 else ""
    print(f"{'ttft ms, median, prompt ' + str(p):<34}{cv:>12.2f}{xv:>12.2f}{ratio(xv, cv):>10}{note}")
    if ce or xe:
        print(f"  errors: colocated {ce} disagg {xe}")
c, x = load("colo-tp"), load("disagg-tp")
print(f"{'throughput out tok/s (' + str(c['concurrency']) + ' streams)':<34}{c['output_tok_s']:>12.1f}{x['output_tok_s']:>12.1f}{ratio(x['output_tok_s'], c['output_tok_s']):>10}")
print(f"{'  tpot ms p50':<34}{c['tpot_ms']['p50']:>12.2f}{x['tpot_ms']['p50']:>12.2f}")
print(f"{'  ttft ms p50 under load':<34}{c['ttft_ms']['p50']:>12.2f}{x['ttft_ms']['p50']:>12.2f}")
print(f"{'  requests/s':<34}{c['req_s']:>12.2f}{x['req_s']:>12.2f}{ratio(x['req_s'], c['req_s']):>10}")
for m in ("colo", "disagg"):
    j = load(f"{m}-many")
    print(f"{j['requests']} concurrent streams ({m}): ok {j['ok']} errors {j['errors']}"
          f" wall {j['wall_s']:.2f} s e2e p99 {j['e2e_ms']['p99']:.0f} ms"
          + (f" first error: {j['first_error']}" if j['first_error'] else ""))
PY
