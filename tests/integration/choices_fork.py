#!/usr/bin/python3
"""n > 1 choices sharing one prefill (issue 21 item 3) on a real cluster (a
router, one prefill node, two decode nodes) over the OpenAI HTTP API: n = 4
runs one prefill (the prefill node's counters grow by one prompt), the
three other choices fork the prompt's KV on the decode node, and every
choice i is exactly the text of an n = 1 request with seed
bt_choice_seed(seed, i), whole and streamed; best_of keeps the best by
cumulative logprob; with the decode node killed mid-way every choice
fails over alone and still yields its text; a client that leaves cancels
every choice; and every decode node's leased and used blocks go back to 0.

usage: choices_fork.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import http.client
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402
from cluster_failover import Cluster, kill  # noqa: E402

M64 = (1 << 64) - 1


def choice_seed(seed, i):
    """router/choices.c bt_choice_seed, as a signed JSON integer."""
    if i == 0:
        z = seed & M64
    else:
        z = (seed + i * 0x9e3779b97f4a7c15) & M64
        z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
        z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
        z = z ^ (z >> 31)
    return z - (1 << 64) if z >= 1 << 63 else z


def post(port, body, timeout=180):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", "/v1/completions", json.dumps(body),
              {"content-type": "application/json"})
    r = c.getresponse()
    data = r.read().decode()
    if not body.get("stream"):
        return r.status, json.loads(data)
    return r.status, [json.loads(line[6:]) for line in data.splitlines()
                      if line.startswith("data: {")]


def params(prompt, n_tokens, seed, **extra):
    b = {"model": "tiny", "prompt": prompt, "max_tokens": n_tokens,
         "temperature": 1.0, "seed": seed, "ignore_eos": True}
    b.update(extra)
    return b


def refs(port, prompt, n_tokens, seed, n, **extra):
    """The texts (and chosen-token logprob sums) of n = 1 requests with
    each choice's seed: what choice i must be."""
    texts, lps = [], []
    for i in range(n):
        st, r = post(port, params(prompt, n_tokens, choice_seed(seed, i), **extra))
        if st != 200:
            nc.bail("reference request %d: %d %s" % (i, st, r))
        c = r["choices"][0]
        texts.append(c["text"])
        lps.append((c.get("logprobs") or {}).get("token_logprobs") or [])
    return texts, lps


def counter(port, name):
    _, body = nc.http_get(port, "/metrics")
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def blocks_back(cl, ids, secs=30):
    """Every named decode node's leased and used kv blocks back to 0."""
    deadline = time.time() + secs
    left = {}
    while time.time() < deadline:
        left = {d: (nc.gauge(cl.nodes[d][2], "baton_node_kv_reserved_blocks"),
                    nc.gauge(cl.nodes[d][2], "baton_node_kv_used_blocks"))
                for d in ids}
        if all(v == (0.0, 0.0) for v in left.values()):
            return True, left
        time.sleep(0.1)
    return False, left


def forks_logged(cl, ids):
    n = 0
    for d in ids:
        with open(os.path.join(cl.tmp, d + ".err")) as f:
            n += sum("a choice forking another's kv cache" in line for line in f)
    return n


class SseStream(threading.Thread):
    """A streamed n > 1 completion read on a thread: text per index."""

    def __init__(self, port, body):
        super().__init__(daemon=True)
        self.port, self.body = port, body
        self.texts, self.chunks, self.finish = {}, {}, {}
        self.request_id, self.error, self.done = None, None, False
        self.conn = None
        self.start()

    def run(self):
        try:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=180)
            self.conn.request("POST", "/v1/completions", json.dumps(self.body),
                              {"content-type": "application/json"})
            r = self.conn.getresponse()
            self.request_id = r.getheader("X-Request-Id")
            for raw in r:
                line = raw.decode().strip()
                if line == "data: [DONE]":
                    self.done = True
                    break
                if not line.startswith("data: {"):
                    continue
                m = json.loads(line[6:])
                if "error" in m:
                    self.error = m["error"]
                for c in m.get("choices", []):
                    i = c["index"]
                    self.texts[i] = self.texts.get(i, "") + c.get("text", "")
                    self.chunks[i] = self.chunks.get(i, 0) + 1
                    if c.get("finish_reason"):
                        self.finish[i] = c["finish_reason"]
        except (OSError, ValueError, AttributeError) as e:
            self.error = self.error or str(e)

    def wait_chunks(self, n, secs=60):
        deadline = time.time() + secs
        while self.is_alive() and time.time() < deadline:
            if len(self.chunks) == self.body["n"] and min(self.chunks.values()) >= n:
                return True
            time.sleep(0.005)
        return False


def check_direct(tmp, port):
    """DecodeStream on a decode node with the fork fields: a fork needs a
    live stem of the same tenant and prompt; a fork waiting for a leader
    whose lease dies before its KV fails FAILED_PRECONDITION."""
    import subprocess
    import grpc
    out = os.path.join(tmp, "node_stubs")
    os.mkdir(out)
    proto = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "proto")
    subprocess.run(["protoc", "-I", proto, "--python_out=" + out, "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                    "node.proto", "common.proto"], check=True, timeout=60)
    sys.path.insert(0, out)
    import node_pb2
    import node_pb2_grpc
    stub = node_pb2_grpc.DecodeStub(grpc.insecure_channel("127.0.0.1:%d" % port))

    def req(rid, prompt=(5, 6, 7, 8, 9), root=b"\1" * 32, **kw):
        r = node_pb2.DecodeRequest(request_id=rid, token_ids=list(prompt), **kw)
        r.sampling.max_tokens = 4
        r.sampling.seed = 3
        r.tenant.root_hash = root
        return r

    def code_of(r):
        try:
            list(stub.DecodeStream(r, timeout=30))
            return None, ""
        except grpc.RpcError as e:
            return e.code(), e.details()

    code, why = code_of(req("fork-unknown", fork_lease_id=12345))
    nc.tap(code == grpc.StatusCode.FAILED_PRECONDITION and "no prompt kv" in why,
           "a fork of an unknown lease: FAILED_PRECONDITION (%s)" % why)
    code, why = code_of(req("fork-both", fork_count=1, fork_lease_id=1))
    nc.tap(code == grpc.StatusCode.INVALID_ARGUMENT,
           "fork_count with fork_lease_id: INVALID_ARGUMENT (%s)" % why)
    r = req("fork-gen", fork_lease_id=1)
    r.generated_ids.append(3)
    code, why = code_of(r)
    nc.tap(code == grpc.StatusCode.INVALID_ARGUMENT,
           "a fork with generated_ids: INVALID_ARGUMENT (%s)" % why)

    leader = stub.DecodeStream(req("leader", fork_count=2), timeout=60)
    resv = next(leader).reservation
    code, why = code_of(req("fork-tenant", root=b"\2" * 32, fork_lease_id=resv.lease_id))
    nc.tap(code == grpc.StatusCode.FAILED_PRECONDITION,
           "a fork from another tenant: FAILED_PRECONDITION (%s)" % why)
    code, why = code_of(req("fork-prompt", prompt=(5, 6, 7, 8, 10),
                            fork_lease_id=resv.lease_id))
    nc.tap(code == grpc.StatusCode.FAILED_PRECONDITION,
           "a fork of another prompt: FAILED_PRECONDITION (%s)" % why)
    got = {}
    fork = stub.DecodeStream(req("fork-ok", fork_lease_id=resv.lease_id), timeout=60)
    first = next(fork)

    def drain():
        try:
            list(fork)
            got["code"] = None
        except grpc.RpcError as e:
            got["code"], got["why"] = e.code(), e.details()
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    leader.cancel()   # its KV never comes: the waiting fork cannot start
    t.join(30)
    nc.tap(first.HasField("reservation") and len(first.reservation.block_ids) == 0 and
           got.get("code") == grpc.StatusCode.FAILED_PRECONDITION,
           "a fork waiting for a leader cancelled before its kv: reserved with no "
           "block_ids, then FAILED_PRECONDITION (%s)" % got.get("why"))


def main():
    tmp, model, env = nc.setup("baton-choices-fork-")
    cl = Cluster(tmp, env, model)
    cl.router()
    cl.node("prefill", "p1")
    for d in ("d1", "d2"):
        cl.node("decode", d)
    nc.tap(cl.nodes_registered(3), "router sees 1 prefill and 2 decode nodes")
    ph = cl.nodes["p1"][2]
    decodes = ["d1", "d2"]

    # 1. n = 4: one prefill, the choices equal n = 1 requests of their seeds
    for prompt, n_tok, seed in (("The fork of one prompt, shared by four", 24, 1234),
                                ("Sixteen tokens fill a block; this prompt has "
                                 "a few more than that", 20, -77)):
        want, want_lp = refs(cl.rh, prompt, n_tok, seed, 4, logprobs=0)
        nc.tap(len(set(want)) > 1, "the four seeds give different texts", want)
        p0, q0 = (counter(ph, "baton_node_prefills_total"),
                  counter(ph, "baton_node_prefix_cache_queries_total"))
        _, one = post(cl.rh, params(prompt, n_tok, seed))
        p1, q1 = (counter(ph, "baton_node_prefills_total"),
                  counter(ph, "baton_node_prefix_cache_queries_total"))
        f0 = forks_logged(cl, decodes)
        st, r = post(cl.rh, params(prompt, n_tok, seed, n=4, logprobs=0))
        p2, q2 = (counter(ph, "baton_node_prefills_total"),
                  counter(ph, "baton_node_prefix_cache_queries_total"))
        cs = sorted(r.get("choices", []), key=lambda c: c["index"])
        got = [c["text"] for c in cs]
        got_lp = [(c.get("logprobs") or {}).get("token_logprobs") for c in cs]
        nc.tap(st == 200 and got == want,
               "n=4 (seed %d): each choice i is the n=1 text of seed "
               "bt_choice_seed(seed, i)" % seed, got, want)
        nc.tap(got_lp == want_lp and all(len(x) == n_tok for x in want_lp),
               "and every token's logprob is the same bits (the forks' first "
               "logits equal the prefill's)")
        nc.tap(p2 - p1 == 1 and q2 - q1 == q1 - q0 > 0,
               "n=4 ran one prefill: %d prefill (n=1: %d), %d prompt tokens looked "
               "up (n=1: %d)" % (p2 - p1, p1 - p0, q2 - q1, q1 - q0))
        nc.tap(forks_logged(cl, decodes) - f0 == 3,
               "three choices forked the prompt's kv on the decode node")
        nc.tap(r.get("usage", {}).get("completion_tokens") == 4 * n_tok and
               r["usage"].get("prompt_tokens") == one["usage"]["prompt_tokens"],
               "usage: the prompt once, every choice's tokens", r.get("usage"))
        ok, left = blocks_back(cl, decodes)
        nc.tap(ok, "decode nodes' reserved and used blocks back to 0", left)

    # 2. streamed: chunks carry each choice's index, texts as whole
    prompt, n_tok, seed = "Streamed choices of one prompt", 16, 99
    want, _ = refs(cl.rh, prompt, n_tok, seed, 3)
    s = SseStream(cl.rh, params(prompt, n_tok, seed, n=3, stream=True))
    s.join(180)
    nc.tap(s.done and [s.texts.get(i) for i in range(3)] == want and
           s.finish == {0: "length", 1: "length", 2: "length"},
           "streamed n=3: chunks by index give each choice's text", s.texts,
           want, s.error)

    # 3. best_of: the n best by cumulative logprob of the candidates
    prompt, n_tok, seed = "Pick the best of four", 12, 5
    want, lps = refs(cl.rh, prompt, n_tok, seed, 4, logprobs=0)
    cums = [sum(x) for x in lps]
    order = sorted(range(4), key=lambda i: (-cums[i], i))[:2]
    st, r = post(cl.rh, params(prompt, n_tok, seed, n=2, best_of=4))
    got = [c["text"] for c in sorted(r.get("choices", []), key=lambda c: c["index"])]
    nc.tap(st == 200 and got == [want[i] for i in order],
           "best_of=4 n=2 keeps candidates %s by cumulative logprob" % order, got)

    # 4. the decode node killed mid-way: every choice fails over on its own
    prompt, n_tok, seed = "Four choices lose their decode node", 300, 4242
    want, _ = refs(cl.rh, prompt, n_tok, seed, 4)
    fo0 = counter(cl.rh, "baton_router_decode_failovers_total")
    s = SseStream(cl.rh, params(prompt, n_tok, seed, n=4, stream=True))
    started = s.wait_chunks(5)
    _, d_id = cl.pair_of(s.request_id or "none")
    before = dict(s.chunks)
    if d_id in cl.nodes:
        kill(cl, d_id)
    s.join(180)
    fo1 = counter(cl.rh, "baton_router_decode_failovers_total")
    nc.tap(started and d_id in decodes and s.done and s.error is None and
           [s.texts.get(i) for i in range(4)] == want,
           "decode node %s killed after %s chunks per choice: all four texts "
           "identical to their n=1 runs" % (d_id, before), s.error,
           [(s.texts.get(i) or "")[:60] for i in range(4)])
    nc.tap(fo1 - fo0 >= 4, "the router counted a failover per choice (%d)"
           % (fo1 - fo0))
    alive = [d for d in decodes if d != d_id]
    ok, left = blocks_back(cl, alive)
    nc.tap(ok, "the surviving decode node's blocks back to 0", left)

    # 5. the client leaves: every choice is cancelled, no block stranded
    cl.node("decode", "d3")
    nc.tap(cl.nodes_registered(3), "a new decode node registers")
    alive.append("d3")
    s = SseStream(cl.rh, params("A client that leaves early", 2000, 7, n=4,
                                stream=True))
    started = s.wait_chunks(3)
    s.conn.sock.shutdown(2)
    s.conn.close()
    s.join(60)
    ok, left = blocks_back(cl, alive, secs=60)
    nc.tap(started and ok, "client gone after a few chunks: every choice "
           "cancelled, decode blocks back to 0", left)

    # 6. the decode node's own checks on forks, called directly
    check_direct(tmp, cl.nodes["d3"][1])
    ok, left = blocks_back(cl, ["d3"], secs=60)
    nc.tap(ok, "after the refused and orphaned forks, d3's blocks back to 0", left)
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
