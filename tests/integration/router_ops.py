#!/usr/bin/python3
"""The router's operator surface on a real cluster (TAP; issue 18).

Readiness follows capacity (item 2):
A real router with a prefill and a decode node: /readyz answers 200 and
the gRPC health of baton.v1.Generate SERVING. `batonctl drain` of the only
decode node turns both (503 with the reason, NOT_SERVING), and a request
meanwhile gets 503 with Retry-After at once (no capacity is not 429);
`batonctl undrain` makes the router ready again. With the decode node gone
the router is not ready either. /livez stays 200 all along.

Logs (item 7): a client's X-Request-Id is the request id and is echoed
(error replies too), an access log line per request, the finish reason
by name, 'rpc listening' with the bound port.

Tracing: `batonctl trace ID -o json` gives the request's events in
order; an unknown id is NOT_FOUND. A prompt of several prefill chunks
(the prefill node runs 16-token chunks) shows each chunk and each layer's
KV transfer, in order, inside the prefill's span of the timeline, the
layers' bytes adding up to what prefill_done reports; the table prints
them too. (A failover in a trace: cluster_failover.py.)

BATON_BUILD_ROOT = the build folder.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

BUILD = nc.BUILD
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def health_stubs(out):
    hdir = os.path.join(ROOT, "proto", "grpc", "health", "v1")
    subprocess.run(["protoc", "-I", hdir, "--python_out=" + out, "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                    os.path.join(hdir, "health.proto")], check=True, timeout=60)
    sys.path.insert(0, out)
    import health_pb2
    import health_pb2_grpc
    return health_pb2, health_pb2_grpc


def ctl(rg, *args):
    return subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router",
                           "127.0.0.1:%d" % rg] + list(args),
                          capture_output=True, text=True, timeout=60)


def wait_http(port, path, want, secs=20):
    deadline = time.time() + secs
    got = (None, "")
    while time.time() < deadline:
        got = nc.http_get(port, path)
        if got[0] == want:
            break
        time.sleep(0.05)
    return got


def completion(port, rid=None, hdr="Retry-After", prompt="Hello", max_tokens=2):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    h = {"Content-Type": "application/json"}
    if rid:
        h["X-Request-Id"] = rid
    c.request("POST", "/v1/completions",
              json.dumps({"model": "tiny", "prompt": prompt, "max_tokens": max_tokens,
                          "ignore_eos": True}), h)
    r = c.getresponse()
    body = r.read().decode()
    return r.status, r.getheader(hdr), body


def check_chunk_trace(rg, rh, model):
    """A prompt of 3+ chunks: its chunks and each layer's transfer in the
    trace, in order."""
    with open(os.path.join(model, "config.json")) as f:
        n_layers = json.load(f)["num_hidden_layers"]
    prompt = " ".join("word%d" % i for i in range(30))
    st, _, body = completion(rh, "chunky-rid-1", prompt=prompt, max_tokens=24)
    nc.tap(st == 200, "a request with a long prompt", st, body)
    r = ctl(rg, "trace", "chunky-rid-1", "-o", "json")
    try:
        tr = json.loads(r.stdout)
    except ValueError:
        tr = {}
    ev = {e["kind"]: int(e["offset_us"]) for e in tr.get("events", [])}
    done = [e["detail"] for e in tr.get("events", []) if e["kind"] == "prefill_done"]
    chunks = tr.get("chunks", [])
    layers = tr.get("layers", [])
    starts = [int(c["start_token"]) for c in chunks]
    toks = [int(c["tokens"]) for c in chunks]
    t = [(int(c["start_us"]), int(c["end_us"])) for c in chunks]
    lo, hi = ev.get("prefill", 0), ev.get("prefill_done", 0)
    chunks_ok = (len(chunks) >= 3 and all(n <= 16 for n in toks) and starts[0] == 0 and
                 all(starts[i + 1] == starts[i] + toks[i] for i in range(len(chunks) - 1)) and
                 all(lo <= a <= b <= hi for a, b in t) and
                 all(t[i][1] <= t[i + 1][0] for i in range(len(t) - 1)) and
                 all(int(c["attempt"]) == 1 for c in chunks))
    nc.tap(r.returncode == 0 and chunks_ok,
           "trace -o json: each prefill chunk in order (tokens, start and end inside the "
           "prefill)", len(chunks), chunks, ev, r.stderr)
    sent = 0
    if done and " bytes sent" in done[0]:
        sent = int(done[0].split(" bytes sent")[0].rsplit(" ", 1)[1])
    posts = [int(x["post_us"]) for x in layers]
    layers_ok = ([int(x["layer"]) for x in layers] == list(range(n_layers)) and
                 posts == sorted(posts) and
                 all(lo <= int(x["post_us"]) <= int(x["complete_us"]) <= hi for x in layers) and
                 all(int(x["bytes"]) > 0 for x in layers) and
                 sum(int(x["bytes"]) for x in layers) == sent and
                 # a layer's first post follows the first chunk's compute start
                 all(int(x["post_us"]) >= t[0][0] for x in layers if t))
    nc.tap(layers_ok, "trace -o json: each layer's transfer in order (bytes adding up to "
           "prefill_done's, post <= complete inside the prefill)", layers, done, ev)
    r = ctl(rg, "trace", "chunky-rid-1")
    out = r.stdout.splitlines()
    sect = lambda name: out[out.index(name) + 2:] if name in out else []  # noqa: E731
    crows = [ln for ln in sect("prefill chunks")[:len(chunks)] if ln.strip()]
    lrows = [ln for ln in sect("layer transfers")[:n_layers] if ln.strip()]
    table_ok = (len(crows) == len(chunks) and len(lrows) == n_layers and
                crows[0].split()[-2] == "0..%d" % (toks[0] - 1) and
                [int(ln.split()[-2]) for ln in lrows] == list(range(n_layers)))
    nc.tap(r.returncode == 0 and table_ok,
           "batonctl trace: a row per chunk and per layer transfer", r.stdout)
    print("# " + r.stdout.replace("\n", "\n# "))


def main():
    try:
        import grpc
        hpb, hgrpc = health_stubs(tempfile.mkdtemp(prefix="baton-ready-pb-"))
    except Exception as e:  # noqa: BLE001
        print("1..0 # SKIP python3-grpcio or protoc missing (%s)" % e)
        return
    tmp, model, env = nc.setup("baton-readiness-")
    router, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms",
                                    "--heartbeat-timeout", "1s"], env, tmp)
    hstub = hgrpc.HealthStub(grpc.insecure_channel("127.0.0.1:%d" % rg))
    SERVING = hpb.HealthCheckResponse.SERVING
    NOT_SERVING = hpb.HealthCheckResponse.NOT_SERVING

    def gen_health():
        return hstub.Check(hpb.HealthCheckRequest(service="baton.v1.Generate"),
                           timeout=5).status

    def wait_health(want, secs=10):
        deadline = time.time() + secs
        st = None
        while time.time() < deadline:
            st = gen_health()
            if st == want:
                break
            time.sleep(0.05)
        return st

    st, body = nc.http_get(rh, "/readyz")
    nc.tap(st == 503 and "no prefill node" in body,
           "no node yet: /readyz 503 with the reason", st, body)
    nc.tap(wait_health(NOT_SERVING) == NOT_SERVING,
           "no node yet: baton.v1.Generate NOT_SERVING")

    common = ["--model", model, "--router", "ipv4:127.0.0.1:%d" % rg, "--threads", "1",
              "--heartbeat", "100ms"]
    procs = {}
    for role in ("prefill", "decode"):
        extra = ["--node-id", "rd-" + role] + (["--kv-blocks", "256"] if role == "decode"
                                               else ["--max-prefill-tokens", "16"])
        procs[role], _, _ = nc.start(role, [os.path.join(
            BUILD, "%s_node/baton-%s" % (role, role))] + common + extra, env, tmp)
    nc.tap(nc.wait_ready(rh, 60), "a prefill and a decode node: /readyz 200")
    nc.tap(wait_health(SERVING) == SERVING, "... and baton.v1.Generate SERVING")

    r = ctl(rg, "drain", "rd-decode")
    nc.tap(r.returncode == 0, "batonctl drain rd-decode", r.stdout + r.stderr)
    st, body = wait_http(rh, "/readyz", 503)
    nc.tap(st == 503 and "decode" in body and "drain" in body,
           "the only decode node drains: /readyz 503 with the reason", st, body)
    nc.tap(wait_health(NOT_SERVING) == NOT_SERVING,
           "... and baton.v1.Generate NOT_SERVING")
    nc.tap(nc.http_get(rh, "/livez")[0] == 200, "... while /livez stays 200")
    t0 = time.time()
    st, after, body = completion(rh)
    nc.tap(st == 503 and after is not None and time.time() - t0 < 5,
           "a request meanwhile: 503 with Retry-After at once (no capacity)",
           st, after, body)

    r = ctl(rg, "undrain", "rd-decode")
    nc.tap(r.returncode == 0, "batonctl undrain rd-decode", r.stdout + r.stderr)
    st, body = wait_http(rh, "/readyz", 200)
    nc.tap(st == 200, "undrained: /readyz 200 again", st, body)
    nc.tap(wait_health(SERVING) == SERVING, "... and baton.v1.Generate SERVING")
    st, _, body = completion(rh)
    nc.tap(st == 200, "a request is served again", st, body)
    st, echoed, body = completion(rh, "client-rid-7", "X-Request-Id")
    nc.tap(st == 200 and echoed == "client-rid-7",
           "a client's X-Request-Id is the request id and comes back", st, echoed)
    st, echoed, _ = completion(rh, "bad id!", "X-Request-Id")
    nc.tap(st == 400 and echoed is None, "an invalid X-Request-Id: 400, not echoed",
           st, echoed)
    c = http.client.HTTPConnection("127.0.0.1", rh, timeout=10)
    c.request("GET", "/v1/nope", headers={"X-Request-Id": "probe-rid-1"})
    r = c.getresponse()
    r.read()
    nc.tap(r.status == 404 and r.getheader("X-Request-Id") == "probe-rid-1",
           "an error reply echoes the client's X-Request-Id", r.status,
           r.getheader("X-Request-Id"))
    time.sleep(0.2)
    with open(os.path.join(tmp, "router.err")) as f:
        log = f.read()
    access = [ln for ln in log.splitlines()
              if "http POST /v1/completions 200" in ln and "client-rid-7" in ln]
    nc.tap(len(access) == 1 and " bytes " in access[0] and " ms" in access[0],
           "an access log line: method, path, status, bytes, duration, request id",
           access, log[-2000:])
    done = [ln for ln in log.splitlines() if "client-rid-7" in ln and "done:" in ln]
    nc.tap(len(done) == 1 and "finish length" in done[0],
           "the end line names the finish reason", done)
    nc.tap(any("rpc listening on 127.0.0.1:%d" % rg in ln for ln in log.splitlines()),
           "'rpc listening' names the bound port", rg)

    r = ctl(rg, "trace", "client-rid-7", "-o", "json")
    kinds = []
    try:
        tr = json.loads(r.stdout)
        kinds = [e["kind"] for e in tr["events"]]
        offs = [int(e["offset_us"]) for e in tr["events"]]
    except (ValueError, KeyError) as e:
        tr, offs = {}, []
    # the decode stream may give the first token before Prefill answers,
    # and with max_tokens 2 even the end: prefill_done is then not in the
    # (finished) trace
    pos = {k: kinds.index(k) for k in set(kinds)}
    ordered = all(k in pos for k in ("admitted", "pair", "reserved", "prefill",
                                      "first_token", "end")) and \
        kinds[0] == "admitted" and kinds[-1] == "end" and \
        pos["pair"] < pos["reserved"] < pos["prefill"] < pos["first_token"] and \
        pos.get("prefill_done", len(kinds)) > pos["prefill"]
    nc.tap(r.returncode == 0 and ordered and offs == sorted(offs) and not tr.get("live"),
           "batonctl trace -o json: the request's events in order", kinds, r.stderr)
    pair = [e for e in tr.get("events", []) if e["kind"] == "pair"]
    nc.tap(pair and "score" in pair[0]["detail"] and "rd-decode" in pair[0]["detail"],
           "the pair event names the nodes and their scores", pair)
    end = [e for e in tr.get("events", []) if e["kind"] == "end"]
    nc.tap(end and "finish length" in end[0]["detail"], "the end event has the status",
           end)
    r = ctl(rg, "trace", "client-rid-7")
    nc.tap(r.returncode == 0 and "OFFSET_MS" in r.stdout and "first_token" in r.stdout,
           "batonctl trace prints the waterfall", r.stdout, r.stderr)
    print("# " + r.stdout.replace("\n", "\n# "))
    r = ctl(rg, "trace", "client-rid-7", "-o", "yaml")
    nc.tap(r.returncode == 0 and "events:" in r.stdout, "batonctl trace -o yaml",
           r.stdout[:300], r.stderr)
    _, _, rh2 = nc.start("router-quiet", [os.path.join(BUILD, "router/baton-router"),
                                           "--model", model, "--grpc-port", "0",
                                           "--http-port", "0", "--access-log", "off"],
                         env, tmp)
    st, _ = nc.http_get(rh2, "/v1/models")
    time.sleep(0.2)
    with open(os.path.join(tmp, "router-quiet.err")) as f:
        quiet = f.read()
    nc.tap(st == 200 and "http GET" not in quiet, "--access-log off: no access lines",
           st, quiet[-500:])

    check_chunk_trace(rg, rh, model)

    r = ctl(rg, "trace", "no-such-request")
    nc.tap(r.returncode != 0 and "NOT_FOUND" in r.stderr,
           "an unknown request id: NOT_FOUND", r.returncode, r.stderr)

    procs["decode"].terminate()
    procs["decode"].wait(timeout=60)
    st, body = wait_http(rh, "/readyz", 503)
    nc.tap(st == 503 and "no decode node" in body,
           "the decode node left: /readyz 503 with the reason", st, body)
    nc.tap(wait_health(NOT_SERVING) == NOT_SERVING,
           "... and baton.v1.Generate NOT_SERVING")
    router.terminate()
    rc = router.wait(timeout=120)
    with open(os.path.join(tmp, "router.err")) as f:
        log = f.read()
    nc.tap(rc == 0 and "Sanitizer" not in log and "stopped" in log,
           "SIGTERM: the router stops cleanly (traces and timers freed)", rc,
           log[-1500:])
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
