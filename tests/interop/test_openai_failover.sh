#!/usr/bin/env bash
# n > 1 through a decode failover with the official `openai` npm client
# (openai_failover.mjs) on a baton-local cluster with two decode nodes.
set -uo pipefail
SRC=${BATON_SOURCE_ROOT:?}
BUILD=${BATON_BUILD_ROOT:?}
NPM_DIR=$BUILD/npm-openai
if [ ! -d "$NPM_DIR/node_modules/openai" ]; then
  echo "1..0 # SKIP the openai npm client is not installed (interop/openai installs it)"
  exit 0
fi
export BATON_RUN_DIR=$(mktemp -d /tmp/baton-failover-npm.XXXXXX)
export BUILD
trap '"$SRC/deploy/local/baton-local" down >/dev/null 2>&1; rm -rf "$BATON_RUN_DIR"' EXIT
if ! "$SRC/deploy/local/baton-local" up --decode 2 --http-port 0 --grpc-port 0 >"$BATON_RUN_DIR/up.txt" 2>&1; then
  echo "not ok 1 - cluster did not start"; sed 's/^/# /' "$BATON_RUN_DIR/up.txt"
  exit 1
fi
HTTP=$(sed -n 's/.*"http": "\([^"]*\)".*/\1/p' "$BATON_RUN_DIR/endpoints.json")
MODEL=$(sed -n 's/.*"model": "\([^"]*\)".*/\1/p' "$BATON_RUN_DIR/endpoints.json")
# every decode node as PID:HTTP_PORT: the client kills the one that runs
# the choices (they share one decode node)
VICTIMS=$(awk '$1 ~ /-decode$/ {print $1, $2}' "$BATON_RUN_DIR/pids" | while read -r name pid; do
  port=$(sed -n 's/.*http_port=\([0-9]*\).*/\1/p' "$BATON_RUN_DIR/$name.out" | head -1)
  printf '%s:%s,' "$pid" "$port"; done)
cp "$SRC/tests/interop/openai_failover.mjs" "$NPM_DIR/"
timeout 300 node "$NPM_DIR/openai_failover.mjs" "$HTTP/v1" "$MODEL" "${VICTIMS%,}" 1
rc=$?
n=$(curl -s "$HTTP/metrics" | sed -n 's/^baton_router_decode_failovers_total \([0-9.]*\)$/\1/p')
if [ -n "$n" ] && [ "${n%.*}" -ge 1 ]; then echo "ok 4 - the router failed over ($n)"
else echo "not ok 4 - the router failed over (${n:-none})"; rc=1; fi
echo "1..4"
if [ $rc != 0 ]; then
  for f in "$BATON_RUN_DIR"/*.log; do echo "# == $f"; tail -20 "$f" | sed 's/^/# /'; done
fi
exit $rc
