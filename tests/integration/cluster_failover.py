#!/usr/bin/python3
"""Failure handling of a real local cluster (DESIGN §2, issue 8): a
prefill node killed mid-prefill, a decode node killed mid-stream (the
client's stream goes on with no token lost or repeated and the same
tokens as an undisturbed run), the router restarted (nodes register again
and serve), determinism among concurrent requests, admission control
(429 / RESOURCE_EXHAUSTED) and bad input through both APIs.

usage: cluster_failover.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402  (process and TAP helpers)

SRC = os.environ.get("BATON_SOURCE_ROOT",
                     os.path.dirname(os.path.dirname(os.path.dirname(
                         os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(SRC, "scripts"))
import grpc_generate  # noqa: E402


class Cluster:
    def __init__(self, tmp, env, model):
        self.tmp, self.env, self.model = tmp, env, model
        self.nodes = {}

    def router(self, grpc_port=0, extra=()):
        self.rp, self.rg, self.rh = nc.start(
            "router-%d" % len(nc.PROCS),
            [os.path.join(nc.BUILD, "router/baton-router"), "--model", self.model,
             "--grpc-port", str(grpc_port), "--http-port", "0",
             "--heartbeat", "100ms", "--heartbeat-timeout", "1s"] + list(extra),
            self.env, self.tmp)
        self.rlog = os.path.join(self.tmp, "router-%d.err" % (len(nc.PROCS) - 1))
        return self.rp

    def node(self, role, node_id, extra=()):
        exe = "prefill_node/baton-prefill" if role == "prefill" else "decode_node/baton-decode"
        p, g, h = nc.start(node_id, [os.path.join(nc.BUILD, exe), "--role", role,
                                     "--node-id", node_id, "--model", self.model,
                                     "--router", "ipv4:127.0.0.1:%d" % self.rg,
                                     "--threads", "1", "--max-prefill-tokens", "32",
                                     "--kv-blocks", "1024"] + list(extra),
                           self.env, self.tmp)
        self.nodes[node_id] = (p, g, h)
        return p

    def nodes_registered(self, n, secs=20):
        deadline = time.time() + nc.scaled(secs)
        while time.time() < deadline:
            _, body = nc.http_get(self.rh, "/metrics")
            count = sum(float(line.split()[1]) for line in body.splitlines()
                        if line.startswith("baton_router_nodes{"))
            if count >= n:
                return True
            time.sleep(0.1)
        return False

    def pair_of(self, request_id, secs=10):
        """The (prefill, decode) node ids the router chose, from its log."""
        deadline = time.time() + nc.scaled(secs)
        pat = re.compile(r"req=%s pair prefill (\S+) .* decode (\S+) " % re.escape(request_id))
        while time.time() < deadline:
            with open(self.rlog) as f:
                m = None
                for line in f:
                    m = pat.search(line) or m
            if m:
                return m.group(1), m.group(2)
            time.sleep(0.01)
        return None, None


class Stream(threading.Thread):
    """A gRPC Generate call read on a thread: token ids as they come."""

    def __init__(self, stubs, target, ids, n, request_id, seed=None, temp=0.0,
                 logprobs=None):
        super().__init__(daemon=True)
        common, pb, pb_grpc = stubs
        self.req = pb.GenerateRequest(model="tiny", request_id=request_id)
        self.req.tokens.ids.extend(ids)
        self.req.sampling.max_tokens = n
        self.req.sampling.temperature = temp
        self.req.sampling.ignore_eos = True
        if seed is not None:
            self.req.sampling.seed = seed
        if logprobs is not None:
            self.req.sampling.logprobs = logprobs
            self.req.sampling.logprobs_chosen = True
        self.pb_grpc, self.target = pb_grpc, target
        self.ids, self.final, self.error = [], None, None
        # (id, logprob, [(id, logprob)]) per token; lp_ok: one per token id
        self.lps, self.lp_ok = [], True
        self.start()

    def run(self):
        import grpc
        try:
            with grpc.insecure_channel(self.target) as ch:
                stub = self.pb_grpc.GenerateStub(ch)
                for msg in stub.Generate(self.req, timeout=nc.scaled(120)):
                    if self.req.sampling.logprobs_chosen:
                        self.lp_ok &= (len(msg.logprobs) == len(msg.token_ids) and
                                       [x.token_id for x in msg.logprobs] == list(msg.token_ids))
                        self.lps.extend((x.token_id, x.logprob,
                                         [(t.token_id, t.logprob) for t in x.top])
                                        for x in msg.logprobs)
                    self.ids.extend(msg.token_ids)
                    if msg.HasField("final"):
                        self.final = msg.final
        except grpc.RpcError as e:
            self.error = "%s: %s" % (e.code().name, e.details())

    def wait_tokens(self, n, secs=60):
        deadline = time.time() + nc.scaled(secs)
        while len(self.ids) < n and self.is_alive() and time.time() < deadline:
            time.sleep(0.005)
        return len(self.ids) >= n


def kill(cluster, node_id):
    p = cluster.nodes[node_id][0]
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=nc.scaled(10))


def http_post(port, path, body, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=nc.scaled(30))
    h = {"content-type": "application/json"}
    h.update(headers or {})
    c.request("POST", path, body, h)
    r = c.getresponse()
    return r.status, r.read().decode(errors="replace")


def main():
    import grpc
    mode = sys.argv[1] if len(sys.argv) > 1 else "shm"
    tmp = tempfile.mkdtemp(prefix="baton-failover-")
    print("# logs in " + tmp, flush=True)
    stubs_dir = os.path.join(tmp, "stubs")
    os.mkdir(stubs_dir)
    stubs = grpc_generate.load_stubs(stubs_dir)
    common, pb, pb_grpc = stubs
    model = os.path.join(tmp, "tiny")
    subprocess.run([os.path.join(nc.BUILD, "tools/baton-mkmodel"), "builtin",
                    "--out", model], check=True, capture_output=True, timeout=nc.scaled(60))
    env = dict(os.environ)
    env["UCX_TLS"] = "posix,sysv,cma,self" if mode == "shm" else "tcp,self"
    if mode == "tcp":
        env["UCX_NET_DEVICES"] = "lo"
    cl = Cluster(tmp, env, model)
    cl.router()
    for nid in ("p1", "p2"):
        cl.node("prefill", nid)
    for nid in ("d1", "d2"):
        cl.node("decode", nid)
    nc.tap(cl.nodes_registered(4), "router sees 2 prefill and 2 decode nodes")
    target = "127.0.0.1:%d" % cl.rg

    # 1. a prefill node killed mid-prefill: the request completes elsewhere
    long_ids = [4091] + [(i * 53 + 7) % 4000 for i in range(1, 1500)]
    ref = nc.run_ref(model, long_ids, 8)
    s = Stream(stubs, target, long_ids, 8, "fo-prefill")
    p_id, d_id = cl.pair_of("fo-prefill")
    time.sleep(0.15)
    mid = not s.ids
    if p_id in cl.nodes:
        kill(cl, p_id)
    s.join(nc.scaled(120))
    nc.tap(mid and s.final is not None and s.ids == ref,
           "prefill node %s killed mid-prefill: completed on the other (%s, %d tokens%s)"
           % (p_id, "same tokens" if s.ids == ref else "DIFFERENT", len(s.ids),
              ", " + s.error if s.error else ""))
    cl.node("prefill", "p3")  # back to two prefill nodes

    # 2. a decode node killed mid-stream: the stream goes on, same tokens
    prompt = [4091, 104, 262, 310, 554, 44, 607, 330, 277, 667, 116]
    n_out = 600
    ref = nc.run_ref(model, prompt, n_out, 0.8, 77, logprobs=3)
    ref_lp = nc.LAST["ref_lp"]
    nc.tap(cl.nodes_registered(4), "a new prefill node registered")
    s = Stream(stubs, target, prompt, n_out, "fo-decode", seed=77, temp=0.8,
               logprobs=3)
    got_some = s.wait_tokens(40)
    p_id, d_id = cl.pair_of("fo-decode")
    before = len(s.ids)
    if d_id in cl.nodes:
        kill(cl, d_id)
    s.join(nc.scaled(120))
    nc.tap(got_some and before < n_out and s.final is not None and s.ids == ref,
           "decode node %s killed after %d of %d tokens: one unbroken stream, "
           "%s (%s)" % (d_id, before, n_out,
                        "identical to an undisturbed run" if s.ids == ref else
                        "DIFFERENT from an undisturbed run", s.error or "ok"))
    nc.tap(s.lp_ok and nc.logprobs_sane(s.lps, s.ids, 3, False) and s.lps == ref_lp,
           "its logprobs (top 3) are baton-run's bit for bit across the failover: "
           "one per token, none lost or repeated (%d)" % len(s.lps))
    _, body = nc.http_get(cl.rh, "/metrics")
    m = re.search(r"^baton_router_decode_failovers_total (\S+)", body, re.M)
    nc.tap(m is not None and float(m.group(1)) >= 1, "the router counted the failover")
    tr = subprocess.run([os.path.join(nc.BUILD, "cli/batonctl"), "--router", target,
                         "trace", "fo-decode", "-o", "json"],
                        capture_output=True, text=True, timeout=nc.scaled(60))
    try:
        events = json.loads(tr.stdout)["events"]
    except (ValueError, KeyError):
        events = []
    kinds = [e["kind"] for e in events]
    fo = [e for e in events if e["kind"] == "failover"]
    nc.tap(fo and d_id in fo[0]["detail"] and kinds[-1:] == ["end"] and
           kinds.count("pair") >= 2 and kinds.index("failover") < len(kinds) - 1 and
           "ok" in events[-1]["detail"],
           "batonctl trace fo-decode: the failover from %s, a second pair, the end"
           % d_id, kinds, tr.stderr)

    # 3. determinism: the same request alone and among 8 concurrent others
    cl.node("decode", "d3")
    nc.tap(cl.nodes_registered(4), "a new decode node registered")
    alone = Stream(stubs, target, prompt, 24, "det-alone", seed=5, temp=0.7)
    alone.join(nc.scaled(60))
    crowd = [Stream(stubs, target, [4091] + [(i * k + 3) % 4000 for i in range(1, 20 + 9 * k)],
                    40, "det-%d" % k, seed=k, temp=0.9) for k in range(8)]
    again = Stream(stubs, target, prompt, 24, "det-crowd", seed=5, temp=0.7)
    for t in crowd + [again]:
        t.join(nc.scaled(120))
    nc.tap(alone.ids and alone.ids == again.ids and all(t.final is not None for t in crowd),
           "seeded sampling alone equals batched among 8 concurrent requests")

    # 4. bad input through gRPC
    def grpc_code(req):
        try:
            with grpc.insecure_channel(target) as ch:
                for _ in pb_grpc.GenerateStub(ch).Generate(req, timeout=nc.scaled(10)):
                    pass
            return "OK", ""
        except grpc.RpcError as e:
            return e.code().name, e.details()

    cases = [
        (pb.GenerateRequest(model="nope", prompt="hi"), "NOT_FOUND"),
        (pb.GenerateRequest(model="tiny", prompt=""), "INVALID_ARGUMENT"),
        (pb.GenerateRequest(model="tiny"), "INVALID_ARGUMENT"),
    ]
    r = pb.GenerateRequest(model="tiny", prompt="hi")
    r.sampling.max_tokens = 100000
    cases.append((r, "INVALID_ARGUMENT"))
    r = pb.GenerateRequest(model="tiny")
    r.tokens.ids.extend([1, 2, 999999])
    cases.append((r, "INVALID_ARGUMENT"))
    r = pb.GenerateRequest(model="tiny", prompt="hi")
    r.sampling.max_tokens = -3
    cases.append((r, "INVALID_ARGUMENT"))
    r = pb.GenerateRequest(model="tiny", prompt="hi", request_id="bad id with spaces")
    cases.append((r, "INVALID_ARGUMENT"))
    for bad in (21, -1):
        r = pb.GenerateRequest(model="tiny", prompt="hi")
        r.sampling.logprobs = bad
        cases.append((r, "INVALID_ARGUMENT"))
    for req, want in cases:
        code, msg = grpc_code(req)
        nc.tap(code == want, "grpc bad input -> %s: %s (%s)" % (want, msg, code))
    with grpc.insecure_channel(target) as ch:
        raw = ch.unary_stream("/baton.v1.Generate/Generate",
                              request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        try:
            list(raw(b"\xff\xff\xff\xff garbage", timeout=nc.scaled(10)))
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
    nc.tap(code == "INVALID_ARGUMENT", "grpc undecodable message -> INVALID_ARGUMENT (%s)" % code)

    # 5. bad input through HTTP
    hcases = [
        (b'{"model": "tiny", "prompt": "hi"', 400, "malformed"),
        (b'{"model": "tiny", "prompt": "\xc3\x28"}', 400, "invalid UTF-8"),
        (b'{"model": "tiny", "prompt": 5}', 400, "wrong type"),
        (b'{"model": "tiny", "prompt": "hi", "max_tokens": "5"}', 400, "wrong type"),
        (b'{"model": "tiny", "prompt": "hi", "frobnicate": true}', 400, "unknown field"),
        (b'{"model": "nope", "prompt": "hi"}', 404, "unknown model"),
        (b'{"model": "tiny", "prompt": "hi", "max_tokens": -1}', 400, "negative max_tokens"),
        (b'{"model": "tiny", "prompt": [1, 2, 99999]}', 400, "token id outside the vocabulary"),
        (b'{"model": "tiny", "prompt": "hi", "logprobs": 21}', 400, "logprobs over 20"),
        (b'{"model": "tiny", "prompt": "hi", "logprobs": -1}', 400, "negative logprobs"),
        (b'{"model": "tiny", "prompt": "hi", "logprobs": true}', 400, "logprobs not an integer"),
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], '
         b'"logprobs": true, "top_logprobs": 21}', 400, "chat top_logprobs over 20"),
        (b'{"model": "tiny", "messages": [{"role": "user", "content": "hi"}], '
         b'"top_logprobs": 2}', 400, "chat top_logprobs without logprobs"),
    ]
    for body, want, what in hcases:
        path = "/v1/chat/completions" if b'"messages"' in body else "/v1/completions"
        try:
            status, text = http_post(cl.rh, path, body)
        except (OSError, http.client.HTTPException) as e:
            status, text = 0, str(e)
        ok = status == want
        if ok and want != 413:
            try:
                ok = "message" in json.loads(text)["error"]
            except (ValueError, KeyError):
                ok = False
        nc.tap(ok, "http %s -> %d (%d %s)" % (what, want, status, text[:100].strip()))
    # an oversized body is refused from its Content-Length, before it is read
    import socket
    sock = socket.create_connection(("127.0.0.1", cl.rh), timeout=nc.scaled(10))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: %d\r\n\r\n{\"model\"" % (64 << 20))
    head = sock.recv(4096).decode(errors="replace")
    sock.close()
    nc.tap(head.startswith("HTTP/1.1 413"), "http oversized body -> 413 (%s)"
           % head.split("\r\n")[0])
    status, text = http_post(cl.rh, "/v1/completions",
                             json.dumps({"model": "tiny", "prompt": "still serving",
                                         "max_tokens": 4}))
    nc.tap(status == 200, "the cluster keeps serving after bad input (%d)" % status)

    # 6. the router restarted: nodes register again and serve
    cl.rp.send_signal(signal.SIGTERM)
    rc = cl.rp.wait(timeout=nc.scaled(15))
    nc.tap(rc == 0, "router exits 0 on SIGTERM (%s)" % rc)
    cl.router(grpc_port=cl.rg)
    ok = cl.nodes_registered(4, secs=20)
    s = Stream(stubs, target, prompt, 8, "after-restart")
    s.join(nc.scaled(60))
    nc.tap(ok and s.final is not None and len(s.ids) == 8,
           "after a router restart the nodes registered again and serve (%s)"
           % (s.error or "ok"))

    # 7. admission control: a router full of requests answers 429
    cl.rp.send_signal(signal.SIGTERM)
    cl.rp.wait(timeout=nc.scaled(15))
    cl.router(grpc_port=cl.rg, extra=["--max-inflight", "2"])
    cl.nodes_registered(4, secs=20)
    slow = [Stream(stubs, target, prompt, 400, "slow-%d" % k) for k in range(2)]
    for t in slow:
        t.wait_tokens(1)
    status, text = http_post(cl.rh, "/v1/completions",
                             json.dumps({"model": "tiny", "prompt": "one more", "max_tokens": 4}))
    code, msg = grpc_code(pb.GenerateRequest(model="tiny", prompt="one more"))
    nc.tap(status == 429 and code == "RESOURCE_EXHAUSTED",
           "full router: HTTP 429 and RESOURCE_EXHAUSTED (%d, %s)" % (status, code))
    for t in slow:
        t.join(nc.scaled(120))
    nc.tap(all(t.final is not None for t in slow), "the admitted requests finished")

    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
