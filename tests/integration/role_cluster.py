#!/usr/bin/python3
"""Roles that move (docs/internals/router.md, Roles that move) on real
processes: a router, two `--role flexible` nodes (f1 starting as prefill,
f2 as decode) and a fixed decode node d0, on baton-mkmodel's tiny model.
While gRPC and HTTP requests run without pause, batonctl moves f1 and f2
through seven role changes (--wait each). Checks: every answer equals its
reference (baton-run's tokens over gRPC, greedy and seeded sampling; the
text a static cluster gave over HTTP), none failed over or retried; the
router placed no work of a role on a node that was leaving it or did not
serve it (read from its placement log lines in order); the moves are in
`batonctl events`, the metrics and a log line each; the refusals (unknown
node, a fixed node, a bad role word, the last prefill node) say why.
Then `baton-local up --flexible --rebalance --router-arg ...`: its nodes
are flexible in their usual roles, the router runs the controller with
the SLO passed through, and `batonctl role` moves a node while it serves.

usage: role_cluster.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import subprocess
import threading
import time

import node_cluster as nc

BUILD = nc.BUILD
N_TOK = 24


def ctl(target, *args):
    return nc.ctl(target, *args, timeout=120)


def nodes(target):
    r = ctl(target, "--json", "nodes")
    try:
        return {n["node_id"]: n for n in json.loads(r.stdout)["nodes"]}
    except (ValueError, KeyError):
        return {}


def metric_sum(port, name, label=""):
    _, body = nc.http_get(port, "/metrics")
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and label in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def ids(seed, n):
    return [4091] + [(i * seed + 7) % 4000 for i in range(1, n)]


def http_text(port, prompt):
    st, js = nc.http_json(port, "/v1/completions",
                          {"model": "tiny", "prompt": prompt,
                           "max_tokens": N_TOK, "temperature": 0,
                           "ignore_eos": True})
    if st != 200:
        return None
    return js["choices"][0]["text"]


def placement_violations(log, start):
    """Walks the router's log in order: every placement's prefill node
    must serve prefill and its decode node decode, neither leaving that
    role. `start`: {node: role word}. Returns the bad lines."""
    serves = {"prefill": {"prefill"}, "decode": {"decode"},
              "both": {"prefill", "decode"}}
    role = dict(start)
    leaving = {}
    bad = []
    for line in log.splitlines():
        m = re.search(r"role move: node (\S+) (\w+) -> (\w+) \((operator|.*?)\)", line)
        if m and "done" not in line:
            leaving[m.group(1)] = serves[m.group(2)] - serves[m.group(3)]
            continue
        m = re.search(r"role move: node (\S+) (\w+) -> (\w+) done", line)
        if m:
            role[m.group(1)] = m.group(3)
            leaving.pop(m.group(1), None)
            continue
        m = re.search(r"pair prefill (\S+) \(.*\) decode (\S+) \(", line)
        if not m:
            continue
        for node, what in ((m.group(1), "prefill"), (m.group(2), "decode")):
            if node not in role:
                continue
            if what not in serves[role[node]] or what in leaving.get(node, ()):
                bad.append(line)
    return bad


def main():
    tmp, model, env = nc.setup("baton-role-it-")
    _, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms"],
                         env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1",
              "--kv-blocks", "512"]
    nc.start("f1", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "f1", "--role", "flexible", "--start-role",
                "prefill"], env, tmp)
    _, _, f2h = nc.start("f2", [os.path.join(BUILD, "decode_node/baton-decode")]
                         + common + ["--node-id", "f2", "--role", "flexible",
                                     "--start-role", "decode"], env, tmp)
    nc.start("d0", [os.path.join(BUILD, "decode_node/baton-decode")] + common
             + ["--node-id", "d0"], env, tmp)
    deadline = time.time() + 30
    while time.time() < deadline and len(nodes(target)) < 3:
        time.sleep(0.1)
    ns = nodes(target)
    nc.tap(nc.wait_ready(rh) and len(ns) == 3 and ns["f1"].get("flexible")
           and ns["f2"].get("flexible") and not ns["d0"].get("flexible"),
           "router ready: f1, f2 flexible, d0 fixed (%s)"
           % {k: (v.get("role"), v.get("flexible")) for k, v in ns.items()})

    # refusals, each with its reason
    r = ctl(target, "role", "nosuch", "prefill")
    nc.tap(r.returncode == 1 and "no node 'nosuch'" in r.stderr,
           "role of an unknown node: NOT_FOUND, exit 1", r.stderr)
    r = ctl(target, "role", "d0", "prefill")
    nc.tap(r.returncode == 1 and "d0 was not started with --role flexible: "
           "its role (decode) is fixed" in r.stderr,
           "role of a fixed node: refused, exit 1", r.stderr)
    r = ctl(target, "role", "f1", "sideways")
    nc.tap(r.returncode == 2 and "'sideways' is not a role: prefill, decode "
           "or both" in r.stderr, "a bad role word: usage, exit 2", r.stderr)
    r = ctl(target, "role", "f1", "decode")
    nc.tap(r.returncode == 1 and "f1 is the last node of model 'tiny' that "
           "serves prefill: moving it to decode would leave none" in r.stderr,
           "moving the last prefill node away: refused, exit 1", r.stderr)
    r = ctl(target, "role", "f1", "prefill")
    nc.tap(r.returncode == 0 and "f1: serves as prefill" in r.stdout,
           "a node asked for the role it has: nothing to do", r.stdout + r.stderr)

    # references: baton-run's tokens (gRPC), a static cluster's text (HTTP)
    prompts = [ids(13, 20), ids(17, 70), ids(19, 40), ids(23, 100)]
    refs = [nc.run_ref(model, p, N_TOK) for p in prompts]
    sampled = (ids(29, 50), 0.9, 4321)
    ref_s = nc.run_ref(model, sampled[0], N_TOK, sampled[1], sampled[2])
    texts = [http_text(rh, p) for p in prompts]
    nc.tap(all(refs) and ref_s and all(t is not None for t in texts),
           "references from baton-run and the static cluster")

    stop = threading.Event()
    results = []       # (what, ok, detail)
    lock = threading.Lock()

    def worker(k):
        i = k
        while not stop.is_set():
            j = i % len(prompts)
            if k == 2:
                got = nc.gen(rg, sampled[0], N_TOK, sampled[1], sampled[2])
                res = ("grpc sampled", got == ref_s, got)
            elif k % 2 == 0:
                got = nc.gen(rg, prompts[j], N_TOK)
                res = ("grpc %d" % j, got == refs[j], got)
            else:
                try:
                    got = http_text(rh, prompts[j])
                except (OSError, ValueError) as e:
                    got = repr(e)
                res = ("http %d" % j, got == texts[j], got)
            with lock:
                results.append(res)
            i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    moves = [("f2", "both"), ("f1", "both"), ("f2", "prefill"),
             ("f1", "decode"), ("f2", "both"), ("f1", "prefill"),
             ("f2", "decode")]
    done_during = []
    for node, role in moves:
        with lock:
            before = len(results)
        # let requests be in flight on the node before it moves
        deadline = time.time() + 60
        while time.time() < deadline:
            with lock:
                if len(results) >= before + 3:
                    break
            time.sleep(0.05)
        r = ctl(target, "--timeout", "90s", "role", node, role, "--wait")
        nc.tap(r.returncode == 0 and ("%s: serves as %s" % (node, role)) in r.stdout,
               "under load: %s moves to %s" % (node, role), r.stdout + r.stderr)
        with lock:
            done_during.append(len(results) - before)
    stop.set()
    for t in threads:
        t.join(120)
    bad = [x for x in results if not x[1]]
    nc.tap(len(results) >= 3 * len(moves) and not bad,
           "%d requests during the moves (%s per move), every answer equal to "
           "its reference" % (len(results), done_during), *bad[:5])
    nc.tap(metric_sum(rh, "baton_router_decode_failovers_total") == 0 and
           metric_sum(rh, "baton_router_prefill_retries_total") == 0,
           "no request failed over or retried")
    ns = nodes(target)
    nc.tap(ns.get("f1", {}).get("role") == "NODE_ROLE_PREFILL" and
           ns.get("f2", {}).get("role") == "NODE_ROLE_DECODE" and
           ns["f1"].get("target_role", "NODE_ROLE_UNSPECIFIED") ==
           "NODE_ROLE_UNSPECIFIED",
           "ListNodes shows the roles they moved to, no move left",
           json.dumps(ns)[:400])
    with open(os.path.join(tmp, "router.err")) as f:
        log = f.read()
    bad = placement_violations(log, {"f1": "prefill", "f2": "decode",
                                     "d0": "decode"})
    n_pairs = len(re.findall(r"pair prefill ", log))
    nc.tap(not bad and n_pairs >= len(results),
           "no placement gave a node work of a role it left or did not serve "
           "(%d placements)" % n_pairs, *bad[:3])
    started = re.findall(r"role move: node (\S+) (\w+) -> (\w+) \(operator\)", log)
    finished = re.findall(r"role move: node (\S+) (\w+) -> (\w+) done", log)
    want = [(n, r) for n, r in moves]
    nc.tap([(a, c) for a, _, c in started] == want and
           [(a, c) for a, _, c in finished] == want,
           "a router log line as each move starts and ends", started, finished)
    r = ctl(target, "--json", "events")
    try:
        evs = json.loads(r.stdout)["events"]
    except (ValueError, KeyError):
        evs = []
    kinds = [(e.get("node_id"), e.get("kind"), e.get("to_role"), e.get("reason"))
             for e in evs]
    exp = []
    for n, role in moves:
        exp.append((n, "move-started", "NODE_ROLE_" + role.upper(), "operator"))
        exp.append((n, "move-done", "NODE_ROLE_" + role.upper(),
                    "announced by the node"))
    nc.tap(kinds == exp, "batonctl events: each move started and done",
           kinds, exp)
    r = ctl(target, "events")
    nc.tap(r.returncode == 0 and r.stdout.count("move-done") == len(moves),
           "batonctl events as a table", r.stdout)
    nc.tap(metric_sum(rh, "baton_router_role_moves_total") == len(moves) and
           metric_sum(rh, "baton_router_role_moves_total", 'to="both"') == 3 and
           metric_sum(f2h, "baton_node_role_moves_total") == 4,
           "moves counted: router by role, f2 its own four")
    r = ctl(target, "describe", "node", "f2")
    nc.tap(r.returncode == 0 and "Flexible:          yes, decode since" in r.stdout,
           "describe node: flexible, its role and since when", r.stdout)
    with open(os.path.join(tmp, "f2.err")) as f:
        f2log = f.read()
    nc.tap(len(re.findall(r"role move \w+ -> \w+ done in \d+ ms", f2log)) == 4,
           "f2 logs each move it finished")
    nc.cleanup()
    local_flexible(tmp)
    nc.finish(tmp)


def local_flexible(tmp):
    """deploy/local/baton-local with flexible nodes and the controller."""
    src = os.environ.get("BATON_SOURCE_ROOT",
                         os.path.join(os.path.dirname(__file__), "..", ".."))
    local = os.path.join(src, "deploy/local/baton-local")
    run_dir = os.path.join(tmp, "local")
    env = dict(os.environ, BATON_RUN_DIR=run_dir, BUILD=os.path.abspath(BUILD))
    env.pop("UCX_TLS", None)
    up = subprocess.run([local, "up", "--flexible", "--rebalance",
                         "--router-arg", "--slo-tpot-ms=25", "--no-kvstore",
                         "--no-cluster-token", "--http-port", "0",
                         "--grpc-port", "0", "--ucx-tls", nc.MODE], env=env,
                        capture_output=True, text=True, timeout=180)
    try:
        with open(os.path.join(run_dir, "endpoints.json")) as f:
            ep = json.load(f)
        target = "ipv4:" + ep["grpc"]
        ns = nodes(target)
        got = {k: (v.get("role"), v.get("flexible")) for k, v in ns.items()}
        nc.tap(up.returncode == 0 and got == {
            "local-prefill-1": ("NODE_ROLE_PREFILL", True),
            "local-decode-2": ("NODE_ROLE_DECODE", True)},
            "baton-local --flexible: both nodes flexible, in their usual "
            "roles (%s)" % got, up.stdout, up.stderr)
        with open(os.path.join(run_dir, "router.log")) as f:
            rlog = f.read()
        nc.tap("role controller on: ttft slo 1000 ms, tpot slo 25 ms" in rlog,
               "--rebalance and --router-arg reach the router: the "
               "controller runs with the TPOT SLO given")
        r = ctl(target, "role", "local-decode-2", "both", "--wait")
        st, js = nc.http_json(int(ep["http"].rsplit(":", 1)[1]),
                              "/v1/completions",
                              {"model": ep["model"], "prompt": "hello",
                               "max_tokens": 4, "ignore_eos": True})
        nc.tap(r.returncode == 0 and
               nodes(target).get("local-decode-2", {}).get("role") ==
               "NODE_ROLE_BOTH" and st == 200 and
               js["usage"]["completion_tokens"] == 4,
               "batonctl role moves a baton-local node to both; it serves",
               r.stdout, r.stderr, st, js)
    except (OSError, ValueError, KeyError) as e:
        nc.tap(False, "baton-local --flexible cluster: %r" % e, up.stdout,
               up.stderr)
    finally:
        subprocess.run([local, "down"], env=env, capture_output=True,
                       timeout=60)


if __name__ == "__main__":
    nc.run(main)
