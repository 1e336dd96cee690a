#!/usr/bin/env bash
# Prefix reuse on a real request trace (issue 9's benchmark): replays the
# first $TRACE_N requests of a Mooncake-format trace through a local
# disaggregated cluster ($PREFILL prefill + 1 decode over UCX shm, and the
# kvstore baton-local starts) twice in this one run, once with prefix reuse
# on (the nodes' pools and the kvstore) and once with --prefix-cache=false
# (neither), and prints the hit ratio beside the trace's ideal (an
# unbounded cache), TTFT p50/p90 and throughput, on / off.
#   bench/cluster/run_trace_bench.sh BUILD_DIR [TRACE.jsonl]
# Knobs: TRACE_N (requests, default 200), TRACE_C (closed-loop concurrency,
# default 4), BLOCK_TOKENS (tokens per 512-token trace block, default 16),
# MAX_OUTPUT (cap on scaled output lengths, default 16), PREFILL (prefill
# nodes, default 2), TRACE_SPEED (replay at the trace's timestamps this many
# times faster; default 4; 0 = closed loop at TRACE_C), OFF (what the second
# run leaves out: "cache", the default, = the pools' reuse and the kvstore;
# "kvstore" = only the kvstore, the nodes' own pools still reuse).
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BUILD=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TRACE=${2:-$ROOT/../shared/data/traces/conversation_trace.jsonl}
LOCAL=$ROOT/deploy/local/baton-local
BENCH=$BUILD/bench/cluster/baton-bench
TRACE_N=${TRACE_N:-200} TRACE_C=${TRACE_C:-4} PREFILL=${PREFILL:-2}
TRACE_SPEED=${TRACE_SPEED:-4} OFF=${OFF:-cache}
case $OFF in cache|kvstore) ;; *) echo "run_trace_bench: OFF=cache|kvstore" >&2; exit 2 ;; esac
BLOCK_TOKENS=${BLOCK_TOKENS:-16} MAX_OUTPUT=${MAX_OUTPUT:-16}
for x in "$BENCH" "$BUILD/tools/baton-mkmodel"; do
  [ -x "$x" ] || { echo "run_trace_bench: $x is not built" >&2; exit 1; }
done
[ -r "$TRACE" ] || { echo "run_trace_bench: cannot read $TRACE" >&2; exit 1; }

NAME=trace-bench
. "$ROOT/bench/cluster/bench_lib.sh"

# the longest trace prompts (239 blocks in the first 1000 conversation
# requests) must fit the context: 8192 positions at 16 tokens per block
MODEL=$TMP/models/builtin
"$BUILD/tools/baton-mkmodel" builtin --max-pos 8192 --out "$MODEL" >/dev/null

run() { # mode (on|off)
  local mode=$1 cache=true nokv=()
  [ "$mode" = off ] && [ "$OFF" = cache ] && cache=false
  [ "$mode" = off ] && [ "$OFF" = kvstore ] && nokv=(--no-kvstore)
  BATON_PREFIX_CACHE=$cache BUILD=$BUILD BATON_RUN_DIR=$TMP/run-$mode \
    "$LOCAL" up --prefill "$PREFILL" --decode 1 --ucx-tls shm --model "$MODEL" \
    --http-port 0 --grpc-port 0 ${nokv[@]+"${nokv[@]}"} >"$TMP/$mode-up.log" 2>&1 ||
    { cat "$TMP/$mode-up.log" >&2; return 1; }
  local url name
  url=$(field "$TMP/run-$mode/endpoints.json" 'j["http"]')
  name=$(field "$TMP/run-$mode/endpoints.json" 'j["model"]')
  echo "== $mode (off = without the $OFF): $url, $TRACE_N requests of $(basename "$TRACE")" >&2
  "$BENCH" --url "$url" --model "$name" --json --timeout 120s --deadline 20m \
    --trace "$TRACE" --trace-requests "$TRACE_N" --concurrency "$TRACE_C" \
    --trace-speed "$TRACE_SPEED" \
    --block-tokens "$BLOCK_TOKENS" --max-output "$MAX_OUTPUT" \
    >"$TMP/$mode.json" || true
  BUILD=$BUILD BATON_RUN_DIR=$TMP/run-$mode "$LOCAL" down >/dev/null 2>&1 || true
}

run on
run off

/usr/bin/python3 - "$TMP/on.json" "$TMP/off.json" "$OFF" <<'EOF'
import json, sys
on, off = (json.load(open(p)) for p in sys.argv[1:3])
print("off = without the %s" % ("prefix cache (pools and kvstore)"
                                if sys.argv[3] == "cache" else "kvstore"))
t = on["trace"]
print("trace %s: %d requests, %d prompt tokens (%d tokens per 512-token block)"
      % (t["file"].split("/")[-1], on["requests"], t["prompt_tokens"],
         t["block_tokens"]))
print("| metric | on | off | on / off |")
print("|---|---:|---:|---:|")
print("| hit ratio (cached / prompt tokens) | %.4f | %.4f | |"
      % (t["hit_ratio"], off["trace"]["hit_ratio"]))
print("| ideal hit ratio (unbounded cache) | %.4f | | |" % t["ideal_hit_ratio"])
print("| hit ratio / ideal (target >= 0.9) | **%.3f** | | |" % t["hit_vs_ideal"])
for k, name in (("p50", "TTFT p50 (ms)"), ("p90", "TTFT p90 (ms)")):
    a, b = on["ttft_ms"][k], off["ttft_ms"][k]
    print("| %s | %.1f | %.1f | %.2f |" % (name, a, b, a / b if b else 0))
a, b = on["req_s"], off["req_s"]
print("| requests/s | %.2f | %.2f | %.2f |" % (a, b, a / b if b else 0))
a, b = on["output_tok_s"], off["output_tok_s"]
print("| output tok/s | %.1f | %.1f | %.2f |" % (a, b, a / b if b else 0))
print("| ok / errors | %d / %d | %d / %d | |"
      % (on["ok"], on["errors"], off["ok"], off["errors"]))
for m, j in (("on", on), ("off", off)):
    if j["first_error"]:
        print("first error (cache %s): %s" % (m, j["first_error"]))
EOF
