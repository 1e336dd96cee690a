#!/usr/bin/python3
"""Router replicas on real processes: two routers, 2 prefill, 2 decode
nodes and a kvstore, every member registered with both routers (--router
A,B). Load through both; SIGKILL one router while requests run on both:
the other's requests complete with baton-run's tokens, the victim's end
with an error (never a short success), and no KV block stays held. The
victim restarts on its port, every member registers again with the KV
blocks it holds, and a prefix cached before the restart is a hit through
it.

usage: router_replicas.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

BUILD = nc.BUILD
GEN = os.path.join(BUILD, "tests/integration/node_gen_client")


ctl = nc.ctl


def members(target):
    """{node_id: role} of the router's node list, None on error."""
    r = ctl(target, "--json", "nodes")
    if r.returncode != 0:
        return None
    try:
        return {n["node_id"]: n["role"] for n in json.loads(r.stdout)["nodes"]
                if n.get("state") == "NODE_STATE_READY"}
    except (ValueError, KeyError):
        return None


wait_for = nc.wait_for


def gen_bg(target, ids, n, seed):
    p = subprocess.Popen([GEN, target, "tiny", ",".join(map(str, ids)), str(n),
                          "0.8", str(seed)], stdout=subprocess.PIPE, text=True)
    nc.PROCS.append(p)
    return p


def outcome(p, timeout=120):
    """(exit code, tokens or None, error line or '')."""
    try:
        out = p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        return None, None, "timed out"
    m = re.search(r"^tokens:([0-9 ]*)$", out, re.M)
    e = re.search(r"^error: (.*)$", out, re.M)
    return (p.returncode, [int(x) for x in m.group(1).split()] if m else None,
            e.group(1) if e else "")


def pair_cached(log, after):
    """(matched, blocks, score) of the last 'pair prefill' line after byte
    `after`. The score tells where the match is: 1.0 per token cached on
    the prefill node itself (--w-hit), 0.9 per token only the kvstore holds
    (--w-store-hit)."""
    with open(log) as f:
        f.seek(after)
        ms = re.findall(r"pair prefill \S+ \(score (\S+), (\d+) of (\d+) "
                        r"blocks cached", f.read())
    return (int(ms[-1][1]), int(ms[-1][2]), float(ms[-1][0])) if ms else None


def node_hit(pc):
    """Every block but the last matched, on the prefill node's own cache."""
    return pc is not None and pc[1] >= 9 and pc[0] >= pc[1] - 1 and \
        pc[2] >= 16 * pc[0] - 0.5


def main():
    tmp, model, env = nc.setup("baton-replicas-it-")
    env["UCX_POSIX_ERROR_HANDLING"] = "y"
    env["UCX_SYSV_ERROR_HANDLING"] = "y"
    router = os.path.join(BUILD, "router/baton-router")

    def start_router(name, port):
        return nc.start(name, [router, "--model", model, "--grpc-port",
                               str(port), "--http-port", "0", "--heartbeat",
                               "200ms", "--lease", "3s"], env, tmp)

    ra, ag, ah = start_router("routerA", 0)
    _, bg, bh = start_router("routerB", 0)
    ta = "ipv4:127.0.0.1:%d" % ag
    tb = "ipv4:127.0.0.1:%d" % bg
    both = "%s,127.0.0.1:%d" % (ta, bg)   # a literal of each form
    _, kg, _ = nc.start("kvstore", [os.path.join(BUILD, "kvstore/baton-kvstore"),
                                    "--grpc-port", "0", "--http-port", "0",
                                    "--dram-bytes", "16M", "--router", both],
                        env, tmp)
    common = ["--model", model, "--router", both, "--threads", "1",
              "--kvstore", "ipv4:127.0.0.1:%d" % kg]
    prefill = os.path.join(BUILD, "prefill_node/baton-prefill")
    decode = os.path.join(BUILD, "decode_node/baton-decode")
    for name in ("p1", "p2"):
        nc.start(name, [prefill] + common + ["--node-id", name], env, tmp)
    dh = []
    for name in ("d1", "d2"):
        dh.append(nc.start(name, [decode] + common +
                           ["--node-id", name, "--kv-blocks", "512"],
                           env, tmp)[2])
    want = {"p1", "p2", "d1", "d2"}
    ok = nc.wait_ready(ah) and nc.wait_ready(bh)
    seen = [wait_for(lambda t=t: (lambda m: m if m is not None and
                                  want <= set(m) and len(m) == 5 else None)
                     (members(t)), 15) for t in (ta, tb)]
    nc.tap(ok and all(seen), "both routers ready, each with the 4 nodes and "
           "the kvstore registered (%s)" % (seen,))

    # 1. load through both routers: every request equals baton-run
    prompts = [[4091] + [(i * (k + 3) + 11) % 4000 for i in range(1, 40 + 7 * k)]
               for k in range(6)]
    refs = [nc.run_ref(model, ids, 40, 0.8, 100 + k)
            for k, ids in enumerate(prompts)]
    procs = [gen_bg(ta if k % 2 == 0 else tb, ids, 40, 100 + k)
             for k, ids in enumerate(prompts)]
    res = [outcome(p) for p in procs]
    same = sum(1 for r, ref in zip(res, refs) if r[0] == 0 and r[1] == ref)
    nc.tap(same == len(prompts), "6 sampled requests, alternating between "
           "the two routers, each equal baton-run (%d of %d)"
           % (same, len(prompts)), res)

    # 2. a prefix served through B is cached on a prefill node; A learns of
    # it from the nodes' KV events as B does
    shared = [4091] + [(i * 29 + 3) % 4000 for i in range(1, 161)]
    ref_shared = nc.run_ref(model, shared, 8)
    nc.gen(bg, shared, 8)
    time.sleep(0.5)
    alog = os.path.join(tmp, "routerA.err")
    mark = os.path.getsize(alog)
    got = nc.gen(ag, shared, 8)
    pc = pair_cached(alog, mark)
    nc.tap(got == ref_shared and node_hit(pc), "a prefix served through B "
           "is a prefix hit on a prefill node chosen by A ((matched, blocks, "
           "score) %s)" % (pc,))

    # 3. SIGKILL router A while long requests run on both routers
    longp = [[4091] + [(i * (k + 5) + 1) % 4000 for i in range(1, 30)]
             for k in range(4)]
    lrefs = [nc.run_ref(model, ids, 400, 0.8, 200 + k)
             for k, ids in enumerate(longp)]
    on_a = [gen_bg(ta, longp[k], 400, 200 + k) for k in (0, 1)]
    on_b = [gen_bg(tb, longp[k], 400, 200 + k) for k in (2, 3)]
    # kill once every decode node holds sequences (both routers' requests
    # are decoding)
    wait_for(lambda: sum((nc.gauge(h, "baton_node_running_sequences") or 0)
                         for h in dh) >= 4, 20)
    ra.send_signal(signal.SIGKILL)
    ra.wait(timeout=10)
    rb_ = [outcome(p) for p in on_b]
    ra_ = [outcome(p) for p in on_a]
    nc.tap(all(r[0] == 0 and r[1] == lrefs[k + 2] for k, r in enumerate(rb_)),
           "B's requests complete with baton-run's tokens while A dies",
           rb_)
    nc.tap(all(r[0] != 0 and r[2] != "" for r in ra_),
           "A's requests end with an error, never a short success (%s)"
           % [r[2] for r in ra_])
    free = wait_for(lambda: all(
        (nc.gauge(h, "baton_node_kv_reserved_blocks") or 0) == 0 and
        (nc.gauge(h, "baton_node_kv_used_blocks") or 0) == 0 and
        (nc.gauge(h, "baton_node_running_sequences") or 0) == 0 for h in dh),
        20)
    nc.tap(free, "no decode node holds a block or sequence for the dead "
           "router's requests (%s)" % [
               (nc.gauge(h, "baton_node_kv_used_blocks"),
                nc.gauge(h, "baton_node_kv_reserved_blocks")) for h in dh])
    ok = all(r[0] == 0 for r in [outcome(gen_bg(tb, prompts[k], 40, 100 + k))
                                 for k in range(2)])
    nc.tap(ok, "B serves on after A died")

    # 4. A restarts on its port: the members register again, with the KV
    # blocks they hold; a prefix cached before the restart is a hit via A
    _, _, ah = start_router("routerA2", ag)
    seen = wait_for(lambda: (lambda m: m if m is not None and want <= set(m)
                             and len(m) == 5 else None)(members(ta)), 15)
    nc.tap(seen and nc.wait_ready(ah), "the restarted router has every member "
           "again (%s)" % (seen,))
    alog = os.path.join(tmp, "routerA2.err")
    mark = os.path.getsize(alog)
    got = nc.gen(ag, shared, 8)
    pc = pair_cached(alog, mark)
    nc.tap(got == ref_shared and node_hit(pc), "the restarted router knows "
           "the prefix a prefill node cached before its restart ((matched, "
           "blocks, score) %s)" % (pc,))
    nc.cleanup()
    local_routers(tmp, env)
    nc.finish(tmp)


def local_routers(tmp, env):
    """baton-local up --routers 2: both routers listed by status --json
    (role router, gRPC addr, http URL), each serves a completion."""
    src = os.environ.get("BATON_SOURCE_ROOT",
                         os.path.join(os.path.dirname(__file__), "..", ".."))
    local = os.path.join(src, "deploy/local/baton-local")
    e = dict(env, BATON_RUN_DIR=os.path.join(tmp, "local"),
             BUILD=os.path.abspath(BUILD))
    e.pop("UCX_TLS", None)
    up = subprocess.run([local, "up", "--routers", "2", "--http-port", "0",
                         "--grpc-port", "0", "--ucx-tls", nc.MODE], env=e,
                        capture_output=True, text=True, timeout=180)
    try:
        st = json.loads(subprocess.run([local, "status", "--json"], env=e,
                                       capture_output=True, text=True,
                                       timeout=30).stdout)
        routers = [n for n in st["nodes"] if n["role"] == "router"]
        served = []
        for r in routers:
            body = json.dumps({"model": "builtin", "prompt": "hi",
                               "max_tokens": 4}).encode()
            req = urllib.request.Request(r["http"] + "/v1/completions", data=body,
                                         headers={"content-type":
                                                  "application/json"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                served.append(json.load(resp)["usage"]["completion_tokens"])
        ok = (up.returncode == 0 and len(routers) == 2 and
              st["routers"] == routers and
              all(r["addr"].startswith("127.0.0.1:") and
                  r["http"].startswith("http://127.0.0.1:") and
                  r["state"] == "ready" for r in routers) and
              served == [4, 4])
    except (ValueError, KeyError, OSError) as ex:
        ok, routers, served = False, str(ex), []
    finally:
        subprocess.run([local, "down"], env=e, capture_output=True, timeout=60)
    nc.tap(ok, "baton-local up --routers 2: status --json lists both routers "
           "(role, addr, http) and each serves (%s, %s)" % (routers, served),
           up.stdout, up.stderr)


if __name__ == "__main__":
    nc.run(main)
