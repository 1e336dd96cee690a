#!/usr/bin/env bash
# The official `openai` npm client and Debian's python3-grpcio against a
# real local cluster (router + 1 prefill + 1 decode) started by baton-local.
set -uo pipefail
SRC=${BATON_SOURCE_ROOT:?}
BUILD=${BATON_BUILD_ROOT:?}
if [ ! -x "$BUILD/prefill_node/baton-prefill" ] || [ ! -x "$BUILD/decode_node/baton-decode" ]; then
  echo "1..0 # SKIP the node daemons are not built"
  exit 0
fi
NPM_DIR=$BUILD/npm-openai
if [ ! -d "$NPM_DIR/node_modules/openai" ]; then
  mkdir -p "$NPM_DIR"
  if ! timeout 300 npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" openai@4 >"$NPM_DIR/install.log" 2>&1; then
    if [ "${CI:-}" = true ]; then
      echo "not ok 1 - npm install openai@4 failed:"; sed 's/^/# /' "$NPM_DIR/install.log"; exit 1
    fi
    echo "1..0 # SKIP cannot install the openai npm client (no registry?)"
    exit 0
  fi
fi
export BATON_RUN_DIR=$(mktemp -d /tmp/baton-interop.XXXXXX)
export BUILD
trap '"$SRC/deploy/local/baton-local" down >/dev/null 2>&1; rm -rf "$BATON_RUN_DIR"' EXIT
# the kvstore's and the nodes' HTTP ports from a base baton-local is given:
# three ports in a row free now (the router's stays ephemeral)
NODE_HTTP=$(/usr/bin/python3 -c '
import socket
for _ in range(50):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); base = s.getsockname()[1]; s.close()
    try:
        for p in range(base, base + 3):
            t = socket.socket(); t.bind(("127.0.0.1", p)); t.close()
    except OSError:
        continue
    if base + 3 < 65536:
        print(base); break')
if ! "$SRC/deploy/local/baton-local" up --http-port 0 --grpc-port 0 --node-http-port "$NODE_HTTP" \
     >"$BATON_RUN_DIR/up.txt" 2>&1; then
  echo "not ok 1 - cluster did not start"; sed 's/^/# /' "$BATON_RUN_DIR/up.txt"
  for f in "$BATON_RUN_DIR"/*.log; do echo "# == $f"; tail -20 "$f" | sed 's/^/# /'; done
  exit 1
fi
HTTP=$(sed -n 's/.*"http": "\([^"]*\)".*/\1/p' "$BATON_RUN_DIR/endpoints.json")
GRPC=$(sed -n 's/.*"grpc": "\([^"]*\)".*/\1/p' "$BATON_RUN_DIR/endpoints.json")
MODEL=$(sed -n 's/.*"model": "\([^"]*\)".*/\1/p' "$BATON_RUN_DIR/endpoints.json")
cp "$SRC/tests/interop/openai_client.mjs" "$NPM_DIR/"
timeout 120 node "$NPM_DIR/openai_client.mjs" "$HTTP/v1" "$MODEL"
rc=$?
# structured outputs (response_format) through the same client
cp "$SRC/tests/interop/structured_client.mjs" "$NPM_DIR/"
timeout 300 node "$NPM_DIR/structured_client.mjs" "$HTTP/v1" "$MODEL" | sed 's/^/# structured: /'
[ "${PIPESTATUS[0]}" = 0 ] && echo "ok 99 - structured outputs (structured_client.mjs)" \
  || { echo "not ok 99 - structured outputs (structured_client.mjs)"; rc=1; }
cp "$SRC/tests/interop/openai_choices.mjs" "$NPM_DIR/"
timeout 300 node "$NPM_DIR/openai_choices.mjs" "$HTTP/v1" "$MODEL" 200 || rc=1
# tool calling (tools, tool_choice, tool messages) through the same client
cp "$SRC/tests/interop/tools_client.mjs" "$NPM_DIR/"
timeout 300 node "$NPM_DIR/tools_client.mjs" "$HTTP/v1" "$MODEL" | sed 's/^/# tools: /'
[ "${PIPESTATUS[0]}" = 0 ] && echo "ok 98 - tool calling (tools_client.mjs)" \
  || { echo "not ok 98 - tool calling (tools_client.mjs)"; rc=1; }
if timeout 60 /usr/bin/python3 "$SRC/scripts/grpc_generate.py" --target "$GRPC" --model "$MODEL" \
     --prompt "Hello, Baton" --max-tokens 8 > "$BATON_RUN_DIR/grpc.txt" 2>&1; then
  echo "ok 100 - python3-grpcio Generate: $(head -c 80 "$BATON_RUN_DIR/grpc.txt" | tr '\n' ' ')"
else
  echo "not ok 100 - python3-grpcio Generate"; sed 's/^/# /' "$BATON_RUN_DIR/grpc.txt"; rc=1
fi
# the clients that left (SDK timeout, two aborts) were cancelled, not
# generated to max_tokens, and the decode node freed their blocks
n_cancel=$(grep -c "cancelled: the client closed the connection" "$BATON_RUN_DIR/router.log")
if [ "$n_cancel" -ge 3 ] && ! grep -q "generated 900 " "$BATON_RUN_DIR/router.log"; then
  echo "ok 101 - the router cancelled the requests whose clients left ($n_cancel)"
else
  echo "not ok 101 - the router cancelled the requests whose clients left ($n_cancel)"; rc=1
fi
DH=$(sed -n 's/.*http_port=\([0-9]*\).*/\1/p' "$BATON_RUN_DIR"/node*-decode.out | head -1)
used=x
for _ in $(seq 1 100); do
  used=$(curl -s "http://127.0.0.1:$DH/metrics" | sed -n 's/^baton_node_kv_used_blocks \([0-9.]*\)$/\1/p')
  [ "$used" = 0 ] && break
  sleep 0.1
done
if [ "$used" = 0 ]; then echo "ok 102 - the decode node holds no blocks afterwards"
else echo "not ok 102 - the decode node holds $used blocks afterwards"; rc=1; fi
# baton-local made cluster tokens: every daemon has its file and none runs
# an open control plane
if [ -r "$BATON_RUN_DIR/tokens/router.tokens" ] && ! grep -l "control plane unauthenticated" "$BATON_RUN_DIR"/*.log >/dev/null; then
  echo "ok 107 - baton-local: the control plane is authenticated (cluster tokens)"
else echo "not ok 107 - baton-local: a daemon runs without cluster tokens"; rc=1; fi
# every daemon's /metrics is findable: status --json lists each one's URL
# (the kvstore's and the nodes' on the ports chosen from --node-http-port),
# each daemon logged that address, and the nodes and the kvstore told the
# router (batonctl get nodes -o wide, column HTTP)
"$SRC/deploy/local/baton-local" status --json >"$BATON_RUN_DIR/status.json"
"$BUILD/cli/batonctl" --router "ipv4:$GRPC" get nodes -o wide >"$BATON_RUN_DIR/wide.txt" 2>&1
if out=$(/usr/bin/python3 - "$BATON_RUN_DIR" "$NODE_HTTP" <<'PY' 2>&1
import json, os, re, sys, urllib.request
run, base = sys.argv[1], int(sys.argv[2])
st = json.load(open(os.path.join(run, "status.json")))
daemons = st["nodes"]   # the router among them, role "router"
assert st["router"] in daemons and st["routers"] == [st["router"]], st
want = {"kvstore": base, "prefill": base + 1, "decode": base + 2}
assert len(daemons) == 4, daemons
wide = open(os.path.join(run, "wide.txt")).read().splitlines()
assert re.match(r"^ID .* ADDRESS +HTTP$", wide[0]), wide
logs = {l.split()[0]: l.split()[1] for l in open(os.path.join(run, "pids"))}
for d in daemons:
    url = d["http"]
    port = int(url.rsplit(":", 1)[1])
    if d["role"] in want:
        assert port == want[d["role"]], (d, want)
        # the row of this daemon in batonctl's table carries its address
        assert any(r.split()[1] == d["role"] and r.split()[-1] == "127.0.0.1:%d" % port
                   for r in wide[1:]), (d, wide)
    name = next(n for n, p in logs.items() if int(p) == d["pid"])
    log = open(os.path.join(run, name + ".log")).read()
    assert "http listening on 127.0.0.1:%d" % port in log, (name, port)
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        body = r.read().decode()
    assert r.status == 200 and "# TYPE baton_build_info gauge" in body, (url, body[:200])
print(" ".join("%s=%s" % (d["role"], d["http"]) for d in daemons))
PY
); then echo "ok 106 - status --json lists every daemon's http URL, each serves /metrics: $out"
else echo "not ok 106 - status --json lists every daemon's http URL, each serves /metrics"
  { echo "$out"; cat "$BATON_RUN_DIR/status.json" "$BATON_RUN_DIR/wide.txt"; } | sed 's/^/# /'; rc=1; fi
# baton-local: status is 0 while up, non-zero once down; --help is usage
if "$SRC/deploy/local/baton-local" status >/dev/null; then echo "ok 103 - baton-local status: 0 while up"
else echo "not ok 103 - baton-local status: non-zero while up"; rc=1; fi
"$SRC/deploy/local/baton-local" --help | grep -q '^set \|pipefail' && { echo "not ok 104 - baton-local --help prints script lines"; rc=1; } \
  || echo "ok 104 - baton-local --help prints only its usage"
kill -TERM "$(awk '$1 == "router" {print $2}' "$BATON_RUN_DIR/pids")"
for _ in $(seq 1 100); do
  kill -0 "$(awk '$1 == "router" {print $2}' "$BATON_RUN_DIR/pids")" 2>/dev/null || break
  sleep 0.1
done
"$SRC/deploy/local/baton-local" status >/dev/null; st=$?
if [ $st != 0 ]; then echo "ok 105 - baton-local status with the router stopped: exit $st"
else echo "not ok 105 - baton-local status with the router stopped: exit 0"; rc=1; fi
if [ $rc != 0 ]; then
  for f in "$BATON_RUN_DIR"/*.log; do echo "# == $f"; tail -20 "$f" | sed 's/^/# /'; done
fi
exit $rc
