#!/usr/bin/env bash
# Router figures for issue 22: how many requests/s one router takes with
# 1, 2 and 4 threads (the event loop alone, then 1 and 3 tokenizer
# threads: --threads 0, 1, 3) and two routers sharing the load, all in one
# run on clusters whose nodes do little per request (the built-in tiny
# model, $PROMPT-word chat prompts, $OUT output tokens):
#   - per config and offered rate (seeded Poisson, $N requests; in $RATES
#     cN is closed loop with N concurrent instead): achieved
#     requests/s, p50/p99 TTFT, and the router's CPU per request (its loop
#     thread's alone, and the whole process's, from /proc);
#   - requests/s at p99 TTFT <= $BOUND_MS: the best rate meeting the
#     bound, and its ratio to one router with the loop alone;
#   - what each router costs a node: Register-stream messages and bytes per
#     second per node (baton_router_node_messages_total and
#     baton_router_node_message_bytes_total), idle and under load;
#   - how many generated tokens each config detokenized on its worker
#     threads, in how many jobs (router/request_detok.c);
#   - with perf installed (PROFILE=1, the default when it is): where the
#     loop thread's time goes at $PROFILE_RATE requests/s, with the loop
#     alone and with 3 worker threads.
# Every run sends the same seeded prompts, and a warm-up sends them once
# first: the prefill node then finds them in its prefix cache, so the nodes
# do little and the router's own work shows. The four clusters stay up for
# the whole run and each rate is measured on every one before the next
# rate, so the drift of a loaded machine falls on all of them alike. CPU
# per request is the routers' on-CPU time over the run (schedstat) less
# what they spend idle in as long (timers, heartbeats), per request.
#   bench/cluster/run_router_bench.sh BUILD_DIR
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BUILD=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOCAL=$ROOT/deploy/local/baton-local
BENCH=$BUILD/bench/cluster/baton-bench
RATES=${RATES:-10 20 40 80}
N=${N:-200} PROMPT=${PROMPT:-64} OUT=${OUT:-2} FORM=${FORM:-chat}
BOUND_MS=${BOUND_MS:-1000}
PROFILE_RATE=${PROFILE_RATE:-40} PROFILE_S=${PROFILE_S:-10}
if [ -z "${PROFILE:-}" ]; then
  PROFILE=0
  command -v perf >/dev/null 2>&1 && PROFILE=1
fi
for x in "$BENCH" "$BUILD/tools/baton-mkmodel" "$BUILD/router/baton-router"; do
  [ -x "$x" ] || { echo "run_router_bench: $x is not built" >&2; exit 1; }
done

NAME=router-bench
. "$ROOT/bench/cluster/bench_lib.sh"

MODEL=$TMP/models/builtin
"$BUILD/tools/baton-mkmodel" builtin --max-pos 4096 --out "$MODEL" >/dev/null

CONFIGS="t0 t1 t3 r2"
up() { # config, then baton-local up flags; writes $TMP/<config>.urls
  local c=$1; shift
  BUILD=$BUILD BATON_RUN_DIR=$TMP/run-$c "$LOCAL" up "$@" --model "$MODEL" \
    --http-port 0 --grpc-port 0 --no-kvstore >"$TMP/$c-up.log" 2>&1 ||
    { cat "$TMP/$c-up.log" >&2; return 1; }
  BUILD=$BUILD BATON_RUN_DIR=$TMP/run-$c "$LOCAL" status --json >"$TMP/$c-status.json"
  field "$TMP/$c-status.json" '",".join(r["http"] for r in j["routers"])' >"$TMP/$c.urls"
  field "$TMP/$c-status.json" '" ".join(str(r["pid"]) for r in j["routers"])' >"$TMP/$c.pids"
}
up t0 --router-threads 0
up t1 --router-threads 1
up t3 --router-threads 3
up r2 --router-threads 1 --routers 2
MODEL_NAME=$(field "$TMP/run-t0/endpoints.json" 'j["model"]')
echo "== clusters up: $CONFIGS" >&2

cpu() { # pids: "loop_ns process_ns" on-CPU, summed over the routers
  local loop=0 all=0 p t ns
  for p in "$@"; do
    read -r ns _ <"/proc/$p/task/$p/schedstat"
    loop=$((loop + ns))
    for t in /proc/"$p"/task/*/schedstat; do
      read -r ns _ <"$t" || continue
      all=$((all + ns))
    done
  done
  echo "$loop $all"
}

metrics() { # config: the routers' node message counters, summed
  local u
  for u in $(tr ',' ' ' <"$TMP/$1.urls"); do
    curl -sf "$u/metrics" | grep '^baton_router_node_message' || true
  done
}

run() { # config load (a rate, or cN: closed loop, N concurrent): one run
  local c=$1 rate=$2 before after t0 t1 load=(--rate "$2")
  [[ $rate == c* ]] && load=(--concurrency "${rate#c}")
  before=$(cpu $(cat "$TMP/$c.pids"))
  metrics "$c" >"$TMP/$c-$rate-m0.txt"
  t0=$(date +%s.%N)
  "$BENCH" --url "$(cat "$TMP/$c.urls")" --model "$MODEL_NAME" --json \
    --timeout 60s --deadline 5m --requests "$N" "${load[@]}" \
    --prompt-tokens "$PROMPT" --output-tokens "$OUT" --prompt-as "$FORM" \
    --seed 1 >"$TMP/$c-$rate.json" || true
  t1=$(date +%s.%N)
  metrics "$c" >"$TMP/$c-$rate-m1.txt"
  after=$(cpu $(cat "$TMP/$c.pids"))
  echo "$before $after $t0 $t1" >"$TMP/$c-$rate.cpu"
}

# the prompts into every prefill node's cache
for c in $CONFIGS; do
  "$BENCH" --url "$(cat "$TMP/$c.urls")" --model "$MODEL_NAME" --timeout 60s \
    --deadline 5m --requests "$N" --concurrency 4 --prompt-tokens "$PROMPT" \
    --output-tokens 1 --prompt-as "$FORM" --seed 1 >/dev/null 2>&1 || true
done
echo "   prompts cached" >&2

# idle: what the nodes send each router, and the routers' own CPU, when
# nothing happens
for c in $CONFIGS; do
  metrics "$c" >"$TMP/$c-idle-m0.txt"
  cpu $(cat "$TMP/$c.pids") >"$TMP/$c-idle.cpu0"
done
IDLE_T0=$(date +%s.%N)
sleep 5
for c in $CONFIGS; do
  metrics "$c" >"$TMP/$c-idle-m1.txt"
  cpu $(cat "$TMP/$c.pids") >"$TMP/$c-idle.cpu1"
done
IDLE_T1=$(date +%s.%N)

for rate in $RATES; do
  for c in $CONFIGS; do
    run "$c" "$rate"
  done
  echo "   rate $rate measured" >&2
done

# how many generated tokens went to the worker pool, in how many jobs
for c in $CONFIGS; do
  for u in $(tr ',' ' ' <"$TMP/$c.urls"); do
    curl -sf "$u/metrics" | grep -E '^baton_router_(detok_|generated_tokens_total)' || true
  done >"$TMP/$c-detok.txt"
done

if [ "$PROFILE" = 1 ]; then
  for c in t0 t3; do
    pid=$(cat "$TMP/$c.pids")
    "$BENCH" --url "$(cat "$TMP/$c.urls")" --model "$MODEL_NAME" --json \
      --timeout 60s --deadline 5m --requests $((PROFILE_RATE * (PROFILE_S + 4))) \
      --rate "$PROFILE_RATE" --prompt-tokens "$PROMPT" --output-tokens "$OUT" \
      --prompt-as "$FORM" --seed 1 >/dev/null 2>&1 &
    bpid=$!
    sleep 1
    timeout -s INT "$PROFILE_S" perf record -q -F 499 --call-graph dwarf,16384 \
      -t "$pid" -o "$TMP/$c.perf" >/dev/null 2>&1 || true
    wait "$bpid" || true
    perf script -i "$TMP/$c.perf" -F ip,sym 2>/dev/null >"$TMP/$c.stacks" || true
  done
  echo "   profiles taken" >&2
fi

/usr/bin/python3 - "$TMP" "$CONFIGS" "$RATES" "$BOUND_MS" "$IDLE_T0" "$IDLE_T1" \
  "$PROFILE" "$N" "$PROMPT" "$OUT" "$FORM" <<'PY'
import json, os, sys
tmp, configs, rates, bound = sys.argv[1], sys.argv[2].split(), \
    sys.argv[3].split(), float(sys.argv[4])
idle_t = float(sys.argv[6]) - float(sys.argv[5])
profile = sys.argv[7] == "1"
n, prompt, out, form = sys.argv[8:12]
names = {"t0": "1 router, 1 thread (the loop, --threads 0)",
         "t1": "1 router, 2 threads (--threads 1)",
         "t3": "1 router, 4 threads (--threads 3)",
         "r2": "2 routers, 2 threads each (--routers 2)"}

def load(c, r):
    try:
        return json.load(open("%s/%s-%s.json" % (tmp, c, r)))
    except (OSError, ValueError):
        return None

def counters(path):
    out = {}
    for line in open(path):
        name, value = line.rsplit(" ", 1)
        out[name] = out.get(name, 0.0) + float(value)
    return out

print("router benchmark: %s requests per rate, %s-word %s prompts (cached on "
      "the prefill node), %s output tokens, TTFT bound p99 <= %.0f ms"
      % (n, prompt, form, out, bound))
print("%-4s %6s %8s %9s %9s %11s %11s" % ("cfg", "rate", "req/s", "ttft p50",
      "ttft p99", "loop ms/req", "cpu ms/req"))
best = {}
def idle_rate(c):  # on-CPU ns per wall second when idle: loop, process
    a = [int(x) for x in open("%s/%s-idle.cpu0" % (tmp, c)).read().split()]
    b = [int(x) for x in open("%s/%s-idle.cpu1" % (tmp, c)).read().split()]
    return (b[0] - a[0]) / idle_t, (b[1] - a[1]) / idle_t
for c in configs:
    bg_loop, bg_all = idle_rate(c)
    for r in rates:
        j = load(c, r)
        if j is None:
            continue
        f = open("%s/%s-%s.cpu" % (tmp, c, r)).read().split()
        b0l, b0a, b1l, b1a = [int(x) for x in f[:4]]
        wall = float(f[5]) - float(f[4])
        ok = max(j.get("ok", 0), 1)
        loop_ms = (b1l - b0l - bg_loop * wall) / 1e6 / ok
        all_ms = (b1a - b0a - bg_all * wall) / 1e6 / ok
        p50, p99 = j["ttft_ms"]["p50"], j["ttft_ms"]["p99"]
        rps = j.get("req_s", 0.0)
        print("%-4s %6s %8.1f %9.0f %9.0f %11.2f %11.2f%s" % (
            c, r, rps, p50, p99, loop_ms, all_ms,
            "" if j.get("errors", 0) == 0 else "  (%d errors)" % j["errors"]))
        if p99 <= bound and j.get("errors", 0) == 0 and rps > best.get(c, 0):
            best[c] = rps
print()
base = best.get("t0")
for c in configs:
    got = best.get(c)
    print("%-45s %8s req/s at p99 TTFT <= %.0f ms%s" % (
        names[c], "%.1f" % got if got else "-", bound,
        "   x%.2f of 1 thread" % (got / base) if got and base else ""))
if "r2" in configs and best.get("r2") and best.get("t1"):
    print("%-45s x%.2f" % ("2 routers / 1 router (2 threads each)",
                           best["r2"] / best["t1"]))

print()
print("generated tokens detokenized on the worker pool (--detok-inline passes stay on the loop):")
for c in configs:
    try:
        d = {}
        for k, v in counters("%s/%s-detok.txt" % (tmp, c)).items():
            d[k.split("{")[0]] = d.get(k.split("{")[0], 0) + v
    except OSError:
        continue
    gen = d.get("baton_router_generated_tokens_total", 0)
    pool = d.get("baton_router_detok_pool_tokens_total", 0)
    jobs = d.get("baton_router_detok_jobs_total", 0)
    print("  %-4s %8.0f of %8.0f tokens (%5.1f%%) in %6.0f jobs (%.1f tokens per job)" % (
        c, pool, gen, 100.0 * pool / gen if gen else 0, jobs, pool / jobs if jobs else 0))

# what a router costs each node: the Register stream's messages and bytes
def per_node(c, m0, m1, secs):
    a, b = counters(m0), counters(m1)
    n_routers = len(open("%s/%s.pids" % (tmp, c)).read().split())
    nodes = 2  # one prefill and one decode node register with each router
    rows = {}
    for k in b:
        kind = k.split('kind="')[1].split('"')[0]
        what = "bytes" if "bytes" in k else "msgs"
        rows.setdefault(kind, {})[what] = (b[k] - a.get(k, 0)) / secs / nodes / n_routers
    return rows
print()
print("what one router costs a node (Register stream, per node per router):")
for label, m0, m1, secs in (
        ("idle", "%s/r2-idle-m0.txt" % tmp, "%s/r2-idle-m1.txt" % tmp, idle_t),):
    rows = per_node("r2", m0, m1, secs)
    for kind in sorted(rows):
        print("  %-5s %-10s %8.2f msg/s %10.1f B/s" % (label, kind, rows[kind].get("msgs", 0),
                                                    rows[kind].get("bytes", 0)))
top = rates[-1]
cpu = open("%s/r2-%s.cpu" % (tmp, top)).read().split()
rows = per_node("r2", "%s/r2-%s-m0.txt" % (tmp, top), "%s/r2-%s-m1.txt" % (tmp, top),
                float(cpu[5]) - float(cpu[4]))
for kind in sorted(rows):
    print("  %-5s %-10s %8.2f msg/s %10.1f B/s" % ("load", kind, rows[kind].get("msgs", 0),
                                                rows[kind].get("bytes", 0)))
print("  (load: the run at %s through 2 routers; a second router doubles "
      "these for each node)" % top)

if profile:
    # each sample's innermost frame that names a phase gives it its phase
    phases = [
        ("tokenize + chat template", ("bt_tok_encode", "bt_chat_render", "bt_router_model_encode")),
        ("detokenize + stop strings", ("bt_tok_stream_", "bt_stopstr_", "bt_tok_decode",
                                       "bt_router_model_token_text", "bt_router_model_decode")),
        ("OpenAI request parse", ("bt_openai_parse", "bt_json_parse", "json_loadb")),
        ("OpenAI response JSON", ("bt_openai_", "json_dump", "bt_json_dump", "json_pack")),
        ("HTTP server", ("bt_http_", "evbuffer_", "bufferevent_", "evhttp")),
        ("node registry (heartbeats, KV events)", ("bt_reg_", "bt_registry_", "bt_prefix_")),
        ("pool hand-off (prompts, detok jobs)", ("bt_tpool_", "bt_front_job_",
                                                         "bt_rreq_batch_", "bt_rreq_job_",
                                                         "bt_rreq_detok_")),
        ("placement, request state", ("bt_select_", "bt_rreq_", "bt_router_queue", "bt_trace_")),
        ("gRPC (node calls, Generate)", ("grpc_", "bt_rpc_", "gpr_", "grpc_core", "absl::")),
        ("waiting in epoll", ("epoll_wait",)),
    ]
    print()
    print("where the loop thread's time goes (perf, % of its on-CPU samples):")
    tables = {}
    for c in ("t0", "t3"):
        path = "%s/%s.stacks" % (tmp, c)
        if not os.path.exists(path):
            continue
        counts, total, stack = {}, 0, []
        for line in open(path).read().split("\n") + [""]:
            if line.strip():
                stack.append(line.strip())
                continue
            if not stack:
                continue
            phase = "other (libc, kernel, libevent)"
            for frame in stack:
                hit = next((p for p, keys in phases if any(k in frame for k in keys)), None)
                if hit:
                    phase = hit
                    break
            counts[phase] = counts.get(phase, 0) + 1
            total += 1
            stack = []
        tables[c] = (counts, max(total, 1))
    order = [p for p, _ in phases] + ["other (libc, kernel, libevent)"]
    print("  %-40s %12s %12s" % ("phase", "--threads 0", "--threads 3"))
    for p in order:
        cells = []
        for c in ("t0", "t3"):
            counts, total = tables.get(c, ({}, 1))
            cells.append("%11.1f%%" % (100.0 * counts.get(p, 0) / total))
        print("  %-40s %s" % (p, " ".join(cells)))
    print("  %-40s %12s %12s" % ("samples", *[str(tables.get(c, ({}, 0))[1]) for c in ("t0", "t3")]))
PY
