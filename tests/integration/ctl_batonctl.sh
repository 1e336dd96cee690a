#!/usr/bin/env bash
# batonctl against a real baton-router on loopback (TAP). Every wait is
# bounded; everything started here is killed on exit.
#   env: BATONCTL, BATON_ROUTER_BIN, BATON_MKMODEL, BATON_BUILD_ROOT
set -u
# the test sets what it needs; an operator's settings must not leak in
unset BATON_CTL_JSON BATON_CTL_NODE BATON_CTL_ROLE BATON_CTL_DRY_RUN BATON_CTL_KVSTORE BATON_CTL_LIMIT

CTL=${BATONCTL:?}
ROUTER=${BATON_ROUTER_BIN:?}
MKMODEL=${BATON_MKMODEL:?}
PREFILL=${BATON_BUILD_ROOT:-/nonexistent}/prefill_node/baton-prefill
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

# wait_line FILE PID: the "grpc_port=N http_port=M" line, within 30 s
wait_line() {
  local i
  for i in $(seq 1 300); do
    if grep -q '^grpc_port=' "$1" 2>/dev/null; then grep -m1 '^grpc_port=' "$1"; return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

echo "1..22"

"$MKMODEL" builtin --out "$TMP/model" >/dev/null 2>"$TMP/mkmodel.log" || {
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
expect "--json nodes is one object with an empty list" 0 '^\{"nodes":\[\]\}$' ''
ctl nodes --json
expect "--json may follow the command" 0 '^\{"nodes":\[\]\}$' ''

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
expect "--json requests with --node and --limit" 0 '^\{"requests":\[\]\}$' ''

ctl cache-stats
expect "cache-stats: UNIMPLEMENTED is explained, exit 1" 1 '' \
  '^batonctl: cache-stats: UNIMPLEMENTED: the router does not support cache statistics yet'
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

if [ -x "$PREFILL" ]; then
  "$PREFILL" --role prefill --node-id ctl-p0 --router "$BATON_ROUTER" --model "$TMP/model" \
    --grpc-port 0 --http-port 0 >"$TMP/prefill.out" 2>"$TMP/prefill.log" &
  PIDS+=("$!")
  seen=0
  for i in $(seq 1 100); do
    ctl nodes
    if grep -q '^ctl-p0 ' <<<"$out"; then seen=1; break; fi
    sleep 0.1
  done
  if [ $seen = 1 ]; then
    ctl drain ctl-p0
    if [ $rc = 0 ] && grep -Eq '^ctl-p0: (draining|drained)$' <<<"$out"; then
      ctl undrain ctl-p0
      expect "a registered node drains and undrains" 0 '^ctl-p0: ready$' ''
    else
      not_ok "a registered node drains and undrains" "drain: exit $rc: $out $err"
    fi
  else
    not_ok "a registered node drains and undrains" "ctl-p0 never listed: $(tail -5 "$TMP/prefill.log")"
  fi
else
  skip "baton-prefill is not built yet: node drain/undrain not tested"
fi

# SIGTERM: the router drains and exits; batonctl then fails fast
kill -TERM "$RPID"
for i in $(seq 1 100); do kill -0 "$RPID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$RPID" 2>/dev/null; then
  not_ok "router exits on SIGTERM within 10 s"
else
  ok "router exits on SIGTERM within 10 s"
fi
start=$(date +%s%N)
ctl --timeout 3s nodes
ms=$(( ($(date +%s%N) - start) / 1000000 ))
if [ $rc = 1 ] && grep -Eq '^batonctl: nodes: UNAVAILABLE:' <<<"$err" && [ $ms -lt 4000 ]; then
  ok "nodes fails with UNAVAILABLE after the router left (${ms} ms)"
else
  not_ok "nodes fails with UNAVAILABLE after the router left" "exit $rc after $ms ms: $err"
fi

[ $failed = 0 ]
