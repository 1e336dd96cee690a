#!/usr/bin/env bash
# batonctl against a real baton-router on loopback (TAP). Every wait is
# bounded (BATON_TEST_TIME_SCALE, default 1, multiplies the bounds: see
# scaled); everything started here is killed on exit.
#   env: BATONCTL, BATON_ROUTER_BIN, BATON_MKMODEL, BATON_BUILD_ROOT
set -u
# the test sets what it needs; an operator's settings must not leak in
unset BATON_CTL_JSON BATON_CTL_NODE BATON_CTL_ROLE BATON_CTL_DRY_RUN BATON_CTL_KVSTORE BATON_CTL_LIMIT \
  BATON_CTL_OUTPUT BATON_CTL_WATCH BATON_CTL_INTERVAL BATON_CTL_WAIT BATON_THREADS

CTL=${BATONCTL:?}
ROUTER=${BATON_ROUTER_BIN:?}
MKMODEL=${BATON_MKMODEL:?}
PREFILL=${BATON_BUILD_ROOT:-/nonexistent}/prefill_node/baton-prefill
DECODE=${BATON_BUILD_ROOT:-/nonexistent}/decode_node/baton-decode
KVSTORE=${BATON_BUILD_ROOT:-/nonexistent}/kvstore/baton-kvstore
TMP=$(mktemp -d /tmp/ctl-test.XXXXXX)
PIDS=()
n=0
failed=0

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# scaled N: N (a wait's bound or a loop's rounds) times BATON_TEST_TIME_SCALE,
# rounded up; never applied to a bound that a check expects to expire
SCALE=${BATON_TEST_TIME_SCALE:-1}
if ! awk -v s="$SCALE" 'BEGIN { exit !(s ~ /^[0-9]*[.]?[0-9]+$/ && s + 0 > 0) }'; then
  echo "Bail out! BATON_TEST_TIME_SCALE=$SCALE: want a number > 0"
  exit 1
fi
scaled() {
  awk -v s="$SCALE" -v x="$1" 'BEGIN { v = x * s; printf "%d\n", (v == int(v)) ? v : int(v) + 1 }'
}

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; }

# run NAME: batonctl with the rest, stdout/stderr/rc into $out $err $rc
ctl() { out=$("$CTL" "$@" 2>"$TMP/err"); rc=$?; err=$(cat "$TMP/err"); }

# expect DESC RC PATTERN_STDOUT PATTERN_STDERR (patterns are grep -E; '' = any)
expect() {
  local desc=$1 want_rc=$2 pout=$3 perr=$4
  if [ "$rc" != "$want_rc" ]; then
    not_ok "$desc" "exit $rc, wanted $want_rc" "stdout: $out" "stderr: $err"
  elif [ -n "$pout" ] && ! grep -Eq -- "$pout" <<<"$out"; then
    not_ok "$desc" "stdout does not match /$pout/: $out"
  elif [ -n "$perr" ] && ! grep -Eq -- "$perr" <<<"$err"; then
    not_ok "$desc" "stderr does not match /$perr/: $err"
  else
    ok "$desc"
  fi
}

# wait_line FILE PID: the "grpc_port=N http_port=M" line, within 30 s (scaled)
wait_line() {
  local i
  for i in $(seq 1 "$(scaled 300)"); do
    if grep -q '^grpc_port=' "$1" 2>/dev/null; then grep -m1 '^grpc_port=' "$1"; return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# same PYTHON: yaml vs json (python3-yaml, as ctl_deploy.py)
yaml_equals_json() {
  python3 - "$1" "$2" <<'PY'
import json, sys, yaml
def strip(v):
    # what moves between two calls (wall times converted from the
    # router's monotonic clock move by a millisecond)
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items()
                if not k.endswith("_unix_ms")}
    if isinstance(v, list):
        return [strip(x) for x in v]
    return v
a = yaml.safe_load(open(sys.argv[1]))
b = json.load(open(sys.argv[2]))
sys.exit(0 if strip(a) == strip(b) else 1)
PY
}

echo "1..76"

# wider than the builtin model: a long completion then lasts seconds (~230
# tokens/s on one idle core), time for batonctl to see it in flight
"$MKMODEL" builtin --hidden 1024 --layers 4 --ffn 2048 --out "$TMP/model" >/dev/null 2>"$TMP/mkmodel.log" || {
  echo "Bail out! baton-mkmodel failed: $(cat "$TMP/mkmodel.log")"; exit 1; }
"$ROUTER" --model "$TMP/model" --grpc-port 0 --http-port 0 --drain-timeout 2s \
  >"$TMP/router.out" 2>"$TMP/router.log" &
RPID=$!
PIDS+=("$RPID")
line=$(wait_line "$TMP/router.out" "$RPID") || {
  echo "Bail out! baton-router did not start: $(tail -5 "$TMP/router.log")"; exit 1; }
GPORT=$(sed -n 's/^grpc_port=\([0-9]*\).*/\1/p' <<<"$line")
export BATON_ROUTER="ipv4:127.0.0.1:$GPORT"
export BATON_CTL_TIMEOUT=5s

ctl health
expect "health says SERVING" 0 '^SERVING$' ''

ctl nodes
expect "nodes on an empty cluster prints only the header" 0 '^ID +ROLE +STATE +FREE/TOTAL' ''
[ "$(wc -l <<<"$out")" = 1 ] && ok "the table has no rows" || not_ok "the table has no rows" "$out"

ctl --json nodes
expect "--json nodes is one object with an empty list and the router's clock" 0 '^\{"nodes":\[\],"now_unix_ms":[1-9][0-9]*\}$' ''
ctl nodes --json
expect "--json may follow the command" 0 '^\{"nodes":\[\],"now_unix_ms":[1-9][0-9]*\}$' ''
ctl get nodes -o json
expect "get nodes -o json is the same object" 0 '^\{"nodes":\[\],"now_unix_ms":[1-9][0-9]*\}$' ''
ctl -o yaml get nodes
expect "-o yaml: an empty list is []" 0 '^nodes: \[\]$' ''
ctl get nodes -o wide
expect "-o wide adds columns" 0 '^ID +ROLE +STATE +FREE/TOTAL +RUNNING +QUEUED_TOKENS +REQUESTS +AGE +HEARTBEAT +VERSION +MODEL +NUMERICS +ADDRESS +HTTP$' ''
ctl get nodes -o xml
expect "-o takes table, wide, json or yaml only" 2 '' 'output'
ctl -j nodes
expect "-j is no longer a short flag (it is --threads in the daemons)" 2 '' "-- 'j'|'-j'|invalid option"
ctl requests -n x
expect "-n is no longer a short flag" 2 '' "-- 'n'|'-n'|invalid option"
ctl get pods
expect "get of an unknown kind is bad usage" 2 '' "unknown kind 'pods'"
ctl get
expect "get without a kind is bad usage" 2 '' 'wrong number of arguments'
ctl describe node nosuch
expect "describe of an unknown node exits 1 with NOT_FOUND" 1 '' "^batonctl: describe: NOT_FOUND: no node 'nosuch'"
ctl describe request nosuch
expect "describe of an unknown request exits 1 with NOT_FOUND" 1 '' "NOT_FOUND: no request 'nosuch'"
ctl describe node
expect "describe without a name is bad usage" 2 '' 'wrong number of arguments'
ctl get node nosuch
expect "get node NAME of an unknown node exits 1" 1 '' "NOT_FOUND: no node 'nosuch'"
ctl version
expect "version prints the client's and the router's version" 0 '^Router version: +[0-9]+\.[0-9]+' ''
grep -Eq '^Client version: +[0-9]+\.[0-9]+' <<<"$out" && ok "version prints the client version" || not_ok "version prints the client version" "$out"
ctl -o json version
expect "-o json version: client_version, router.version, nodes" 0 '^\{"client_version":"[^"]+","router":\{"version":"[^"]+",.*"nodes":\[\]\}$' ''
ctl get leases
expect "get leases on an idle cluster prints only the header" 0 '^DECODE +REQUEST +PHASE +BLOCKS +EXPIRES +AGE$' ''
ctl forget nosuch
expect "forget of an unknown node exits 1 with NOT_FOUND" 1 '' 'NOT_FOUND'
ctl --timeout 5 nodes
expect "a duration without a unit is bad usage" 2 '' 'timeout'
ctl get nodes -w --interval 10ms
expect "--interval below 200ms is refused (bounded refresh)" 2 '' 'interval'

# completion: a script bash accepts, whose words come from the tables
"$CTL" completion bash >"$TMP/compl.bash" 2>"$TMP/err"; rc=$?
if [ $rc = 0 ] && bash -n "$TMP/compl.bash"; then ok "completion bash is valid bash"
else not_ok "completion bash is valid bash" "exit $rc: $(cat "$TMP/err")"; fi
compl() { bash -c 'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _batonctl; echo "${COMPREPLY[*]}"' _ "$TMP/compl.bash" "$@"; }
c=$(compl batonctl ge)
[ "$c" = get ] && ok "completion: 'ge' -> get" || not_ok "completion: 'ge' -> get" "got '$c'"
c=$(compl batonctl get nodes -o "")
[ "$c" = "table wide json yaml" ] && ok "completion: -o offers the formats" || not_ok "completion: -o offers the formats" "got '$c'"
c=$(compl batonctl describe "")
[ "$c" = "node request" ] && ok "completion: describe offers node and request" || not_ok "completion: describe offers node and request" "got '$c'"
c=$(compl batonctl nodes --wat)
[ "$c" = "--watch" ] && ok "completion: options too" || not_ok "completion: options too" "got '$c'"
ctl completion zsh
expect "completion of another shell is bad usage" 2 '' 'only bash'

# --watch: a table per round until SIGINT, then exit 0
"$CTL" get nodes -w --interval 200ms >"$TMP/watch.out" 2>"$TMP/watch.err" &
WPID=$!
PIDS+=("$WPID")
for i in $(seq 1 "$(scaled 100)"); do
  [ "$(grep -c '^ID ' "$TMP/watch.out")" -ge 3 ] && break
  sleep 0.1
done
kill -INT "$WPID"
wrc=124
for i in $(seq 1 "$(scaled 100)"); do
  if ! kill -0 "$WPID" 2>/dev/null; then wait "$WPID"; wrc=$?; break; fi
  sleep 0.1
done
if [ "$wrc" = 0 ] && [ "$(grep -c '^ID ' "$TMP/watch.out")" -ge 3 ]; then
  ok "get nodes --watch lists every --interval and exits 0 on SIGINT"
else
  not_ok "get nodes --watch lists every --interval and exits 0 on SIGINT" "exit $wrc" "$(cat "$TMP/watch.out" "$TMP/watch.err")"
fi
# a reader that stops (| head) ends the watch quietly
timeout "$(scaled 30)" "$CTL" get nodes -o json -w --interval 200ms 2>"$TMP/err" | head -n 2 >"$TMP/head.out"
st=("${PIPESTATUS[@]}")
if [ "${st[0]}" = 0 ] && [ "$(wc -l <"$TMP/head.out")" = 2 ] && [ ! -s "$TMP/err" ]; then
  ok "--watch -o json | head: one object per line, then a quiet exit 0 (EPIPE)"
else
  not_ok "--watch -o json | head: one object per line, then a quiet exit 0 (EPIPE)" "exit ${st[0]}" "$(cat "$TMP/head.out" "$TMP/err")"
fi

ctl drain nosuch
expect "drain of an unknown node exits 1 with NOT_FOUND" 1 '' '^batonctl: drain: NOT_FOUND: .*nosuch'
ctl undrain nosuch
expect "undrain of an unknown node exits 1 with NOT_FOUND" 1 '' '^batonctl: undrain: NOT_FOUND'
ctl cancel nosuch
expect "cancel of an unknown request reports not found" 1 '' 'NOT_FOUND: no request .nosuch.'
ctl --json cancel nosuch
expect "--json cancel prints found=false" 1 '^\{"found":false\}$' ''

ctl requests
expect "requests on an idle cluster prints only the header" 0 '^ID +PHASE' ''
ctl --json requests --node x --limit 5
expect "--json requests with --node and --limit" 0 '^\{"requests":\[\],"now_unix_ms":[1-9][0-9]*\}$' ''

ctl cache-stats
expect "cache-stats without a kvstore: the node pools and the hit rate" 0 '^NODE +TIER' ''
ctl placement
expect "placement without a kvstore: FAILED_PRECONDITION names it, exit 1" 1 '' \
  '^batonctl: placement: FAILED_PRECONDITION: no kvstore is registered'
ctl transfer-health
expect "transfer-health on a cluster with no transfers yet prints only the header" 0 '^PREFILL +DECODE +BYTES' ''
ctl --json transfer-health
expect "--json transfer-health with no pairs" 0 '^\{\}$|^\{"pairs":\[\]\}$' ''

ctl drain
expect "drain without NODE is bad usage (exit 2, one line)" 2 '' '^batonctl drain: wrong number of arguments'
[ "$(wc -l <<<"$err")" = 1 ] && ok "bad usage is one line" || not_ok "bad usage is one line" "$err"
ctl nodes --bogus
expect "an unknown option is bad usage" 2 '' "unknown option '--bogus'"
ctl frobnicate
expect "an unknown command is bad usage" 2 '' "unknown command 'frobnicate'"
ctl --timeout 5x nodes
expect "a bad duration is bad usage" 2 '' 'timeout'

# wait_rows PATTERN...: until `get nodes` has a row for each, within 20 s
# (scaled)
wait_rows() {
  local i p all
  for i in $(seq 1 "$(scaled 200)"); do
    ctl get nodes
    all=1
    for p in "$@"; do grep -q "^$p " <<<"$out" || all=0; done
    [ $all = 1 ] && return 0
    sleep 0.1
  done
  return 1
}

N_CLUSTER=25
if [ -x "$PREFILL" ] && [ -x "$DECODE" ] && [ -x "$KVSTORE" ]; then
  export UCX_TLS=posix,sysv,cma,self
  "$PREFILL" --role prefill --node-id ctl-p0 --router "$BATON_ROUTER" --model "$TMP/model" \
    --threads 1 --grpc-port 0 --http-port 0 >"$TMP/prefill.out" 2>"$TMP/prefill.log" &
  PIDS+=("$!")
  "$DECODE" --node-id ctl-d1 --router "$BATON_ROUTER" --model "$TMP/model" --threads 1 \
    --kv-blocks 512 --grpc-port 0 --http-port 0 >"$TMP/decode.out" 2>"$TMP/decode.log" &
  PIDS+=("$!")
  # BATON_THREADS=0 means "all cores" for the kvstore too (it was refused)
  BATON_THREADS=0 "$KVSTORE" --grpc-port 0 --http-port 0 --dram-bytes 16M \
    --node-id ctl-kv --router "$BATON_ROUTER" >"$TMP/kv.out" 2>"$TMP/kv.log" &
  KVPID=$!
  PIDS+=("$KVPID")
  if wait_rows ctl-p0 ctl-d1 ctl-kv; then
    ok "a prefill, a decode and a kvstore started with BATON_THREADS=0 register"
  else
    not_ok "a prefill, a decode and a kvstore started with BATON_THREADS=0 register" "$out" \
      "$(tail -3 "$TMP/prefill.log" "$TMP/decode.log" "$TMP/kv.log")"
  fi
  cores=$(nproc); [ "$cores" -gt 64 ] && cores=64
  grep -q ", $cores io threads," "$TMP/kv.log" && ok "kvstore: BATON_THREADS=0 gives one io thread per core ($cores)" \
    || not_ok "kvstore: BATON_THREADS=0 gives one io thread per core ($cores)" "$(grep -m1 'io threads' "$TMP/kv.log")"

  ctl get nodes
  expect "node rows carry their age and heartbeat age" 0 '^ctl-d1 +decode +ready +512/512 +0 +0 +[0-9]+s +[0-9]+s +ipv4:' ''
  ctl get node ctl-p0 -o json
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); n=d["nodes"]; sys.exit(0 if len(n)==1 and n[0]["node_id"]=="ctl-p0" and n[0]["registered_unix_ms"]>0 and n[0]["last_heartbeat_unix_ms"]>=n[0]["registered_unix_ms"] and abs(d["now_unix_ms"]-n[0]["last_heartbeat_unix_ms"])<60000 else 1)' "$out" \
    && ok "get node NAME -o json: that node, with registered and heartbeat times" \
    || not_ok "get node NAME -o json: that node, with registered and heartbeat times" "$out"
  ctl get nodes --role kvstore
  expect "get nodes --role kvstore lists the kvstore" 0 '^ctl-kv +kvstore ' ''
  # each member told the router where its /metrics is (the port it bound)
  ctl get nodes -o wide
  bad=""
  for m in prefill:ctl-p0 decode:ctl-d1 kv:ctl-kv; do
    hp=$(sed -n 's/.*http_port=\([0-9]*\).*/\1/p' "$TMP/${m%%:*}.out")
    grep -Eq "^${m#*:} .* 127\.0\.0\.1:$hp\$" <<<"$out" || bad="$bad ${m#*:}(no 127.0.0.1:$hp)"
    grep -q "http listening on 127.0.0.1:$hp" "$TMP/${m%%:*}.log" || bad="$bad ${m#*:}(log)"
    curl -sf "http://127.0.0.1:$hp/metrics" | grep -q '^baton_build_info' || bad="$bad ${m#*:}(/metrics)"
  done
  [ -z "$bad" ] && ok "get nodes -o wide: each member's HTTP address, logged at start, serves /metrics" \
    || not_ok "get nodes -o wide: each member's HTTP address, logged at start, serves /metrics" "$bad" "$out"
  "$CTL" get nodes -o yaml >"$TMP/n.yaml" 2>"$TMP/err"
  "$CTL" get nodes -o json >"$TMP/n.json" 2>>"$TMP/err"
  if yaml_equals_json "$TMP/n.yaml" "$TMP/n.json"; then ok "-o yaml reads back as the -o json answer"
  else not_ok "-o yaml reads back as the -o json answer" "$(cat "$TMP/n.yaml" "$TMP/err")"; fi
  ctl describe node ctl-d1
  if [ $rc = 0 ] && grep -q '^Name: *ctl-d1$' <<<"$out" && grep -q '^Role: *decode$' <<<"$out" &&
     grep -Eq '^Registered: *20[0-9-]+T[0-9:]+Z \([0-9]+s ago\)$' <<<"$out" &&
     grep -Eq '^Last heartbeat: *20.*ago\)$' <<<"$out" && grep -q '^Leases: *0$' <<<"$out" &&
     grep -q '^Numerics: *cpu/exact/tp1/k1$' <<<"$out"; then
    ok "describe node: name, role, numerics, registered and heartbeat times, leases"
  else
    not_ok "describe node: name, role, numerics, registered and heartbeat times, leases" "exit $rc" "$out" "$err"
  fi
  ctl -o json describe node ctl-d1
  expect "describe -o json gathers node, requests, leases, transfers" 0 '^\{"node":\{"node_id":"ctl-d1".*"requests":\[\],"leases":\{"leases":\[\].*"transfers":\[' ''
  ctl version
  expect "version lists every node" 0 'ctl-d1' ''
  ctl forget ctl-p0
  expect "forget of a live node is refused (FAILED_PRECONDITION)" 1 '' 'FAILED_PRECONDITION: node ctl-p0 is not lost'

  # a long streamed completion keeps ctl-d1 busy for a while
  HPORT=$(sed -n 's/.*http_port=\([0-9]*\).*/\1/p' "$TMP/router.out")
  curl -s -N -m "$(scaled 120)" "http://127.0.0.1:$HPORT/v1/completions" -H 'content-type: application/json' \
    -d '{"model":"model","prompt":"hello world","max_tokens":1500,"temperature":0,"ignore_eos":true,"stream":true}' \
    >"$TMP/long.out" 2>&1 &
  CURL=$!
  PIDS+=("$CURL")
  rid=""
  for i in $(seq 1 "$(scaled 300)"); do
    ctl get requests
    rid=$(awk 'NR == 2 && $4 == "ctl-p0" && $5 == "ctl-d1" { print $1 }' <<<"$out")
    [ -n "$rid" ] && break
    kill -0 "$CURL" 2>/dev/null || break
    sleep 0.05
  done
  if [ -n "$rid" ]; then
    ok "get requests shows the request on ctl-p0 -> ctl-d1"
    ctl drain ctl-d1 --wait --timeout 300ms --interval 200ms
    if [ $rc = 4 ] && grep -q 'timed out' <<<"$err" && grep -q '^ctl-d1: draining, 1 request' <<<"$out"; then
      ok "drain --wait --timeout: exit 4 while the node still holds a request"
    elif ! kill -0 "$CURL" 2>/dev/null; then
      skip "the request ended before drain --wait --timeout 300ms could time out"
    else
      not_ok "drain --wait --timeout: exit 4 while the node still holds a request" "exit $rc" "$out" "$err"
    fi
    ctl get requests -o wide
    expect "get requests -o wide: age, tenant and start time" 0 "^$rid +[a-z]+ +model +ctl-p0 +ctl-d1 +[0-9]+ +[0-9]+ +[0-9]+s +[^ ]+ +20[0-9-]+T[0-9:]+Z " ''
    ctl get leases
    expect "get leases: the request holds ctl-d1" 0 "^ctl-d1 +$rid " ''
    ctl describe request "$rid"
    if [ $rc = 0 ] && grep -q "^ID: *$rid$" <<<"$out" && grep -q '^Decode node: *ctl-d1$' <<<"$out" &&
       grep -Eq '^Started: *20.*ago\)$' <<<"$out"; then
      ok "describe request: id, decode node, start time"
    else
      not_ok "describe request: id, decode node, start time" "exit $rc" "$out" "$err"
    fi
    ctl describe node ctl-d1
    expect "describe node lists its request" 0 "^  $rid +[a-z]+ +decode " ''
    ctl drain ctl-d1 --wait --timeout "$(scaled 100)s" --interval 200ms
    if [ $rc = 0 ] && [ "$(tail -n 1 <<<"$out")" = "ctl-d1: drained" ] && ! kill -0 "$CURL" 2>/dev/null; then
      ok "drain --wait returns 0 once the request finished"
    else
      not_ok "drain --wait returns 0 once the request finished" "exit $rc" "$out" "$err"
    fi
    wait "$CURL" 2>/dev/null
    grep -q '"finish_reason":"length"' "$TMP/long.out" && ok "the drained node finished the stream" \
      || not_ok "the drained node finished the stream" "$(tail -c 300 "$TMP/long.out")"
    ctl undrain ctl-d1
    expect "undrain after drain --wait" 0 '^ctl-d1: ready$' ''
  else
    not_ok "get requests shows the request on ctl-p0 -> ctl-d1" "$out" "$(tail -c 300 "$TMP/long.out")"
    for i in 1 2 3 4 5 6 7 8; do skip "no request in flight"; done
  fi
  ctl drain ctl-p0 --wait --timeout "$(scaled 30)s" --interval 200ms
  expect "drain --wait of an idle node returns at once" 0 '^ctl-p0: drained$' ''
  ctl undrain ctl-p0
  expect "a registered node drains and undrains" 0 '^ctl-p0: ready$' ''
  ctl -o yaml drain ctl-p0
  expect "drain -o yaml prints the answer" 0 '^state: "NODE_STATE_(DRAINING|DRAINED)"$' ''
  ctl undrain ctl-p0 -o json
  expect "undrain -o json prints the answer" 0 '^\{"state":"NODE_STATE_READY"\}$' ''
  ctl drain ctl-kv
  expect "drain of a kvstore is refused" 1 '' 'kvstore'
  kill -TERM "$KVPID"
else
  for i in $(seq 1 $N_CLUSTER); do skip "baton-prefill, baton-decode or baton-kvstore is not built"; done
fi

# SIGTERM: the router drains and exits; batonctl then fails fast
kill -TERM "$RPID"
for i in $(seq 1 "$(scaled 100)"); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$RPID" 2>/dev/null; then
  not_ok "router exits on SIGTERM within $(scaled 10) s"
else
  ok "router exits on SIGTERM within $(scaled 10) s"
fi
start=$(date +%s%N)
ctl --timeout 3s nodes
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ $rc = 3 ] && grep -Eq '^batonctl: nodes: UNAVAILABLE:' <<<"$err" && [ $ms -lt 4000 ]; then
  ok "nodes fails with UNAVAILABLE, exit 3 (not reachable), after the router left (${ms} ms)"
else
  not_ok "nodes fails with UNAVAILABLE, exit 3 (not reachable), after the router left" "exit $rc after $ms ms: $err"
fi
ctl drain x --wait --timeout 2s
expect "drain --wait with the router gone: exit 3" 3 '' 'UNAVAILABLE'
ctl version
expect "version with the router gone still prints the client's, exit 3" 3 '^Client version: ' 'UNAVAILABLE'

[ $failed = 0 ]
