#!/usr/bin/python3
"""The numerics id on a real cluster (kv-spec v2, issue 20 item 1): two
groups of nodes whose compute differs only in its kernel revision, as in a
rolling upgrade that changes a kernel's bits (BATON_TEST_KERNEL_REV=2 makes
a node report cpu/exact/tp1/k2; the others report cpu/exact/tp1/k1).

  - every node reports its id at registration (batonctl get nodes -o json);
    a hello with no id or a malformed one is refused, saying why (grpcio);
  - no pair mixes ids, and the pair-selection log says which id and how
    many nodes of another id were not candidates;
  - a prefix cached in one group is reused there (the group holding the
    longest prefix is tried first) and never in the other: with the first
    group's prefill node drained, the same prompt runs in the second group
    with nothing cached, and gives the same tokens;
  - a decode node killed mid-stream: the request fails over to the other
    decode node of its own id, same tokens as baton-run; when no node of
    its id is left, it ends UNAVAILABLE saying so, and never moves to the
    other group's free decode node.

Before the cluster: --backend cuda where no GPU is usable, and --numerics
fast on the CPU backend, stop baton-prefill, baton-decode and baton-run at
start with exit 2 and one line naming what is missing.

usage: numerics_cluster.py shm   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402
import cluster_failover as cf  # noqa: E402  (Cluster, Stream, kill)

K1, K2 = "cpu/exact/tp1/k1", "cpu/exact/tp1/k2"
GROUP = {"pa": K1, "da1": K1, "da2": K1, "pb": K2, "db": K2}


def pair_line(cl, rid, nth=1, secs=10):
    """The nth pair line the router logged for the request: (prefill,
    decode, cached blocks, numerics, other-numerics count), or None."""
    pat = re.compile(r"req=%s pair prefill (\S+) \(score \S+ (\d+) of \d+ blocks "
                     r"cached.* decode (\S+) \(score .* numerics (\S+) \((\d+) nodes "
                     r"of other numerics" % re.escape(rid))
    deadline = time.time() + nc.scaled(secs)
    while time.time() < deadline:
        with open(cl.rlog) as f:
            found = [m for m in map(pat.search, f) if m]
        if len(found) >= nth:
            m = found[nth - 1]
            return m.group(1), m.group(3), int(m.group(2)), m.group(4), int(m.group(5))
        time.sleep(0.02)
    return None


def node_state(target, nid):
    r = nc.ctl(target, "get", "nodes", "-o", "json")
    try:
        return {n["node_id"]: n["state"] for n in json.loads(r.stdout)["nodes"]}.get(nid)
    except (ValueError, KeyError):
        return None


def drain(target, nid, on=True):
    """batonctl drain (or undrain) NODE, then waits until the router sees
    it: the node's next report carries the state."""
    r = nc.ctl(target, "drain" if on else "undrain", nid)
    want = ("NODE_STATE_DRAINING", "NODE_STATE_DRAINED") if on else ("NODE_STATE_READY",)
    ok = nc.wait_for(lambda: node_state(target, nid) in want, secs=10)
    return r.returncode == 0 and ok


def kill_mid_stream(cl, stubs, target, prompt, n_out, rid):
    """Starts a stream, kills its decode node once tokens flow, waits for
    the end: (stream, tokens came before the kill, first pair, killed)."""
    s = cf.Stream(stubs, target, prompt, n_out, rid)
    got = s.wait_tokens(30)
    p = pair_line(cl, rid)
    d = p[1] if p else None
    if d in cl.nodes:
        cf.kill(cl, d)
    s.join(nc.scaled(120))
    return s, got, p, d


def pairs_of(cl, rid):
    with open(cl.rlog) as f:
        return [(m.group(1), m.group(2)) for m in
                re.finditer(r"req=%s pair prefill (\S+) .* decode (\S+) " % re.escape(rid),
                            f.read())]


def main():
    tmp, model, env = nc.setup("baton-numerics-")
    stubs_dir = os.path.join(tmp, "stubs")
    os.mkdir(stubs_dir)
    stubs = cf.grpc_generate.load_stubs(stubs_dir)
    bad = []
    gpu = subprocess.run("nvidia-smi -L", shell=True, capture_output=True).returncode == 0
    for exe in ("prefill_node/baton-prefill", "decode_node/baton-decode",
                "tools/baton-run"):
        for flags, want in ((["--backend", "cuda"], r"--backend cuda: (no NVIDIA "
                             r"driver|the NVIDIA driver|this build has no CUDA|"
                             r"the CUDA plugin)"),
                            (["--numerics", "fast"], r"--numerics fast needs "
                             r"--backend cuda")):
            if gpu and flags[1] == "cuda":
                continue   # a usable GPU: the device check covers it
            args = [os.path.join(nc.BUILD, exe), "--model", model] + flags
            args += ["--prompt", "hi"] if exe.endswith("run") else []
            r = subprocess.run(args, capture_output=True, text=True,
                               timeout=nc.scaled(30), env=env)
            lines = r.stderr.strip().splitlines()
            if r.returncode != 2 or len(lines) != 1 or not re.search(want, lines[0]):
                bad.append((exe, flags, r.returncode, r.stderr[-300:]))
    nc.tap(not bad, "--backend cuda without a usable GPU, and --numerics fast "
           "on cpu: exit 2 at start, one line naming what is missing", bad)

    cl = cf.Cluster(tmp, env, model)
    cl.router()
    k2_env = dict(env, BATON_TEST_KERNEL_REV="2")
    for nid, role in (("pa", "prefill"), ("da1", "decode"), ("da2", "decode"),
                      ("pb", "prefill"), ("db", "decode")):
        cl.env = k2_env if GROUP[nid] == K2 else env
        cl.node(role, nid)
    cl.env = env
    nc.tap(cl.nodes_registered(5), "router sees 5 nodes")
    target = "127.0.0.1:%d" % cl.rg

    # 1. each node's id as registered
    r = nc.ctl(target, "get", "nodes", "-o", "json")
    try:
        seen = {n["node_id"]: n["numerics"] for n in json.loads(r.stdout)["nodes"]}
    except (ValueError, KeyError):
        seen = {}
    metr = {}
    for nid, (_, _, hp) in cl.nodes.items():
        _, body = nc.http_get(hp, "/metrics")
        m = re.search(r'^baton_node_numerics_info\{backend="cpu",numerics="([^"]+)"\} 1$',
                      body, re.M)
        metr[nid] = m.group(1) if m else None
    nc.tap(seen == GROUP and metr == GROUP, "every node reports its numerics id "
           "at registration and in its metrics", seen, metr, r.stderr)

    # a registration without a valid id is refused with the reason
    subprocess.run(["protoc", "-I", os.path.join(cf.SRC, "proto"),
                    "--python_out=" + stubs_dir, "registry.proto"], check=True)
    import grpc
    import registry_pb2
    bad = []
    for num in ("", "CPU exact", "x" * 65):
        h = registry_pb2.NodeHello(node_id="intruder", role=1, model="tiny",
                                   grpc_address="ipv4:127.0.0.1:1", numerics=num)
        h.capacity.total_blocks, h.capacity.block_size = 64, 16
        h.capacity.geometry.dtype = 1
        h.capacity.geometry.block_size = 16
        try:
            with grpc.insecure_channel(target) as ch:
                call = ch.stream_stream("/baton.v1.Registry/Register",
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=lambda b: b)
                for _ in call(iter([registry_pb2.NodeMessage(hello=h)]),
                              timeout=nc.scaled(10)):
                    pass
            bad.append((num, "OK"))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.INVALID_ARGUMENT or \
                    "numerics id" not in (e.details() or ""):
                bad.append((num, e.code().name, e.details()))
    r = nc.ctl(target, "get", "nodes", "-o", "json")
    nc.tap(not bad and "intruder" not in r.stdout,
           "a hello with no numerics id, or a malformed one, is refused "
           "INVALID_ARGUMENT naming the numerics id", bad)

    # 2. no pair mixes ids; the log names the id and the others left out
    bad = []
    for k in range(8):
        rid = "mix-%d" % k
        s = cf.Stream(stubs, target, [4091] + [(i * 31 + k) % 4000 for i in range(1, 40)],
                      4, rid)
        s.join(nc.scaled(60))
        pl = pair_line(cl, rid)
        if (s.final is None or pl is None or GROUP.get(pl[0]) != GROUP.get(pl[1]) or
                pl[3] != GROUP.get(pl[0]) or pl[4] != (3 if pl[3] == K2 else 2)):
            bad.append((rid, pl, s.error))
    nc.tap(not bad, "8 requests: every pair within one numerics id, logged with "
           "the id and the nodes of the other id left out", bad)

    # 3. a prefix is reused within its id only
    prompt = [4091] + [(i * 53 + 7) % 4000 for i in range(1, 200)]
    ref = nc.run_ref(model, prompt, 8)
    s1 = cf.Stream(stubs, target, prompt, 8, "pre-1")
    s1.join(nc.scaled(60))
    p1 = pair_line(cl, "pre-1")
    s2 = cf.Stream(stubs, target, prompt, 8, "pre-2")
    s2.join(nc.scaled(60))
    p2 = pair_line(cl, "pre-2")
    nc.tap(p1 and p2 and p2[3] == p1[3] and p2[2] >= 10 and s2.ids == ref == s1.ids,
           "the same prompt again goes to the id that caches it and reuses %s "
           "blocks, same tokens" % (p2[2] if p2 else "?"), p1, p2)
    first = p1[0] if p1 else "pa"
    other = [n for n in GROUP if n.startswith("p") and n != first][0]
    drained = drain(target, first)
    s3 = cf.Stream(stubs, target, prompt, 8, "pre-3")
    s3.join(nc.scaled(60))
    p3 = pair_line(cl, "pre-3")
    nc.tap(drained and p3 and p3[0] == other and p3[2] == 0 and
           p3[3] == GROUP[other] and s3.ids == ref,
           "%s drained: the prompt runs on %s (the other id) with nothing "
           "cached there, and gives the same tokens" % (first, other), p3)
    drain(target, first, False)

    # 4. failover stays within the id
    drain(target, "pb")      # places the next request in k1
    prompt = [4091, 104, 262, 310, 554, 44, 607, 330, 277, 667, 116]
    n_out = 400
    ref = nc.run_ref(model, prompt, n_out)
    s, got, p, d = kill_mid_stream(cl, stubs, target, prompt, n_out, "fo-1")
    pl2 = pair_line(cl, "fo-1", nth=2)
    nc.tap(got and p and p[3] == K1 and pl2 and GROUP.get(pl2[1]) == K1 and
           s.final is not None and s.ids == ref,
           "decode node %s killed mid-stream: the request went on on %s (%s), "
           "identical to baton-run" % (d, pl2[1] if pl2 else "?", K1),
           p, pl2, s.error)

    # 5. no node of its id left: it ends, never on the other id's node
    # (pb stays drained until then: the request starts in k1)
    s, got, p, d = kill_mid_stream(cl, stubs, target, prompt, n_out, "fo-2")
    pairs = pairs_of(cl, "fo-2")
    # tokens already streamed: the stream's last message says why it ended
    fin = s.final
    nc.tap(got and p and GROUP.get(d) == K1 and fin is not None and
           fin.finish_reason == stubs[0].FINISH_REASON_ERROR and
           "numerics '%s'" % K1 in fin.error and 0 < len(s.ids) < n_out and
           all(GROUP.get(x[1]) == K1 for x in pairs),
           "its last decode node of %s killed: the request ends in error naming "
           "the id, and db (%s) never takes it" % (K1, K2), pairs, fin, s.error)
    drain(target, "pb", False)
    s = cf.Stream(stubs, target, prompt, 8, "after")
    s.join(nc.scaled(60))
    pl = pair_line(cl, "after")
    nc.tap(s.final is not None and pl and pl[3] == K2 and s.ids == ref[:8],
           "new requests go on in %s" % K2, pl, s.error)

    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
