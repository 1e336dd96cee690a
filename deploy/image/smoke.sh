#!/usr/bin/env bash
# Runs inside the built image as its user (deploy/image/test-image): every
# binary answers --help, then a tiny cluster on loopback (baton-mkmodel's
# builtin model, a router, a prefill and a decode node over UCX tcp)
# serves an OpenAI completion and `batonctl get nodes` lists both nodes.
# Only what the image has: bash, coreutils, grep, sed and the binaries
# (the HTTP request goes through bash's /dev/tcp).
set -euo pipefail
W=$(mktemp -d /tmp/smoke.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
fail() { echo "smoke: $*" >&2; tail -n 5 "$W"/*.log >&2 2>/dev/null || true; exit 1; }

for b in baton-router baton-prefill baton-decode baton-kvstore batonctl baton-mkmodel; do
  "$b" --help >/dev/null 2>&1 || fail "$b --help failed"
done
echo "smoke: every binary answers --help (as uid $(id -u))"

baton-mkmodel builtin --out "$W/m" >/dev/null
export UCX_TLS=tcp,self UCX_NET_DEVICES=lo

# start NAME ARGS...: the grpc and http ports it bound, once it serves
start() {
  local name=$1 i
  shift
  "$@" >"$W/$name.out" 2>"$W/$name.log" &
  pids+=("$!")
  for i in $(seq 1 600); do
    grep -q '^grpc_port=' "$W/$name.out" && { grep -m1 '^grpc_port=' "$W/$name.out"; return 0; }
    kill -0 "${pids[-1]}" 2>/dev/null || fail "$name exited"
    sleep 0.1
  done
  fail "$name did not start in 60 s"
}
line=$(start router baton-router --model "$W/m" --grpc-port 0 --http-port 0)
G=$(sed 's/.*grpc_port=\([0-9]*\).*/\1/' <<<"$line")
H=$(sed 's/.*http_port=\([0-9]*\).*/\1/' <<<"$line")
for role in prefill decode; do
  start "$role" "baton-$role" --role "$role" --node-id "smoke-$role" --model "$W/m" \
    --router "ipv4:127.0.0.1:$G" --grpc-port 0 --http-port 0 --threads 1 >/dev/null
done

# http METHOD PATH [BODY]: the whole response
http() {
  local body=${3:-}
  exec 3<>"/dev/tcp/127.0.0.1/$H"
  printf '%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
    "$1" "$2" "${#body}" "$body" >&3
  timeout 60 cat <&3
  exec 3<&-
}
for i in $(seq 1 600); do
  http GET /readyz | grep -q '^HTTP/1.1 200' && break
  [ "$i" = 600 ] && fail "the router never became ready"
  sleep 0.1
done
nodes=$(batonctl --router "127.0.0.1:$G" get nodes)
grep -q '^smoke-prefill .* ready ' <<<"$nodes" && grep -q '^smoke-decode .* ready ' <<<"$nodes" ||
  fail "batonctl get nodes: $nodes"
resp=$(http POST /v1/completions '{"model":"m","prompt":"Hello, Baton","max_tokens":8,"temperature":0}')
grep -q '^HTTP/1.1 200' <<<"$resp" && grep -q '"completion_tokens":8' <<<"$resp" ||
  fail "completion: $resp"
echo "smoke: a router, a prefill and a decode node served a completion of 8 tokens"
echo "smoke: ok"
