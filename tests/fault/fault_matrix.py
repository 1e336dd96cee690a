#!/usr/bin/python3
"""The fault matrix (issue 17): one local cluster (router, kvstore, 2
prefill, 2 decode nodes), an undisturbed reference run of a seeded request
pool, then trials: each drives a seeded mixed load from the pool (gRPC and
HTTP, streamed and whole, shared prefixes, some cancelled or with a
deadline) and injects one fault at a random moment: SIGKILL, or SIGSTOP
then SIGCONT after a random pause, of a prefill node, a decode node, the
kvstore or the router; or a network fault between a prefill and a decode
node (each node in its own network namespace, netns.py): random loss of
some % of their packets, a partition, or a fixed delay, healed after a
random time. A network kind this machine cannot make is skipped with the
reason.

Every request must complete with the reference's output or end with a
clear error, a partial output always a prefix of the reference. After the
load: no daemon but the victim died, every live node's used and reserved
KV blocks, running sequences and queued prefill tokens are 0, the router
has no request in flight, the kvstore holds no pin or reservation; the
victim (restarted when killed) is listed again, takes work (its sibling
drained) and the cluster serves a fresh prompt with baton-run's tokens.

Prints TAP (a line per trial), then the fault x outcome table; exits 1 on
any violation. A trial is reproduced by the same --seed and --kinds (the
moment of the fault is the same; the machine's timing is not).

usage: fault_matrix.py [--trials N] [--seed S] [--kinds k1,k2|signal|net] [--mode tcp|shm]
                       [--requests MIN,MAX] [--pool N] [--pause MIN,MAX]
       (BATON_BUILD_ROOT = the build folder)
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fault_cluster as fc   # noqa: E402
import fault_load as fl      # noqa: E402
import netns                 # noqa: E402
nc = fc.nc

SIGNAL_KINDS = ["%s-%s" % (a, v) for v in ("prefill", "decode", "kvstore", "router")
                for a in ("kill", "stop")]
VERBOSE = False
PAUSE = (0.2, 5.0)      # seconds a stop or a network fault lasts (--pause)
NET_KINDS = ["net-delay", "net-loss", "net-partition"]
SIBLING = {"p1": "p2", "p2": "p1", "d1": "d2", "d2": "d1"}
OUTCOMES = ["done", "error", "cancelled", "deadline", "dropped", "hang", "client-bug"]


def pick_victim(rnd, kind):
    what = kind.split("-", 1)[1]
    if kind in NET_KINDS:
        # the pair whose link fails: the kv cache of a prefill crosses it
        return rnd.choice(["p1", "p2"]) + "-" + rnd.choice(["d1", "d2"])
    if what == "prefill":
        return rnd.choice(["p1", "p2"])
    if what == "decode":
        return rnd.choice(["d1", "d2"])
    return what


def quiet_report(cl, skip, secs=20):
    """Waits until every live daemon is idle; [] or what is still held."""
    want = {"prefill": ["baton_node_kv_reserved_blocks", "baton_node_queued_prefill_tokens",
                        "baton_node_running_sequences"],
            "decode": ["baton_node_kv_used_blocks", "baton_node_kv_reserved_blocks",
                       "baton_node_running_sequences"],
            "kvstore": ["baton_kvstore_active_pins", "baton_kvstore_active_reservations"],
            "router": ["baton_router_inflight_requests", "baton_router_queued_requests"]}
    deadline = time.time() + secs
    while True:
        held = []
        for name in ("router", "kvstore") + fc.NODES:
            if name in skip:
                continue
            m = cl.metrics(name)
            for g in want[fc.ROLE[name]]:
                if m.get(g) != 0:
                    held.append("%s %s=%s" % (name, g, m.get(g)))
        if not held or time.time() > deadline:
            return held
        time.sleep(0.2)


def fresh_prompt(rnd):
    return [rnd.randrange(100, 4000) for _ in range(rnd.randrange(20, 60))]


def serves(cl, victim, rnd, pb):
    """[] or why not: the victim is listed and takes work, and a fresh prompt
    gets baton-run's tokens. A network fault's victim is the pair "pX-dY":
    with both siblings drained, the fresh prompt crosses the healed link."""
    bad = []
    if not cl.ready():
        return ["the router does not list the 4 nodes and the kvstore as "
                "serving (%s)" % cl.registered()]
    victims = [victim] if victim in cl.proc else victim.split("-")
    siblings = [SIBLING[v] for v in victims if v in SIBLING]
    for s in siblings:
        cl.ctl("drain", s)
    before = {v: cl.metrics(v) for v in victims}
    ids = fresh_prompt(rnd)
    ref = nc.run_ref(cl.model, ids, 8)
    g = fl.Grpc(pb[0], pb[1], cl.grpc["router"], cl.host("router"))
    got = g.run({"ids": ids, "max_tokens": 8, "temperature": 0.0, "seed": 1,
                 "deadline": None, "cancel_after": None})
    g.close()
    if got[0] != "done" or got[1] != ref or got[2]:
        bad.append("a fresh prompt after the fault: %s %s %s, baton-run %s" % (
            got[0], got[1], got[2], ref))
    for v in victims:
        bad += took_work(cl, v, before[v], rnd, pb)
    for s in siblings:
        cl.ctl("undrain", s)
    if siblings and not cl.ready():
        bad.append("%s did not come back after undrain" % " and ".join(siblings))
    return bad


def took_work(cl, victim, before, rnd, pb):
    """[] or why the victim's work counter did not move."""
    counter = {"prefill": "baton_node_prefills_total",
               "decode": "baton_node_decode_tokens_total",
               "kvstore": "baton_kvstore_put_blocks_total"}.get(fc.ROLE[victim])
    if not counter:
        return []
    # the kvstore's puts land after the reply; a node that found the
    # store unreachable skips it until a probe answers (1 s), so more
    # fresh prompts go until one is published
    deadline = time.time() + 15
    while time.time() < deadline and \
            cl.metrics(victim).get(counter, 0) <= before.get(counter, 0):
        time.sleep(0.5)
        if fc.ROLE[victim] == "kvstore":
            g = fl.Grpc(pb[0], pb[1], cl.grpc["router"], cl.host("router"))
            g.run({"ids": fresh_prompt(rnd), "max_tokens": 2, "temperature": 0.0,
                   "seed": 1, "deadline": None, "cancel_after": None})
            g.close()
    after = cl.metrics(victim).get(counter, 0)
    if after <= before.get(counter, 0):
        return ["%s took no work: %s stayed %s" % (victim, counter, after)]
    return []


def trial(cl, pb, pool, refs, kind, seed, load_s, nreq, victim=None):
    """One trial: (victim, moment, pause, outcome counts, violations)."""
    rnd = random.Random(seed)
    runs = [fl.vary(rnd, rnd.choice(pool)) for _ in range(rnd.randrange(*nreq))]
    # the reference load's time scaled to this trial's share of the pool:
    # requests and the fault come in its first half, so most
    # trials hit requests in flight
    span = load_s * len(runs) / len(pool)
    offsets = [rnd.uniform(0, span * 0.5) for _ in runs]
    t_fault = rnd.uniform(0.02, span * 0.5)
    pause = rnd.uniform(*PAUSE)
    victim = victim or pick_victim(rnd, kind)
    killed = kind.startswith("kill")
    expiries = cl.metrics("router").get("baton_router_node_expiries_total")
    # a network fault's pair takes the whole load (their siblings drained):
    # every request crosses the faulty link
    drained = [SIBLING[v] for v in victim.split("-")] if kind in NET_KINDS else []
    for s in drained:
        cl.ctl("drain", s)
    g = fl.Grpc(pb[0], pb[1], cl.grpc["router"], cl.host("router"))
    t0 = time.time()
    threads, out = fl.run_load(g, cl.http["router"], runs, offsets,
                                 cl.host("router"))
    time.sleep(max(0.0, t0 + t_fault - time.time()))
    violations = []
    if kind in NET_KINDS:
        crossed = link_transfers(cl, victim)
        try:
            what = net_fault(cl, kind, victim, rnd)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            what = "(not made)"
            violations.append("the harness could not make the fault: %s" % e)
    else:
        cl.signal(victim, signal.SIGKILL if killed else signal.SIGSTOP)
    in_flight = sum(1 for i, t in enumerate(threads) if out[i] is None and
                    offsets[i] <= t_fault)
    if not killed:
        time.sleep(pause)
        if kind in NET_KINDS:
            violations += cl.net.heal()
            # kv transfers of the pair that ended while the link was faulty
            crossed = [b - a for a, b in zip(crossed, link_transfers(cl, victim))]
        else:
            cl.signal(victim, signal.SIGCONT)
    for t in threads:
        t.join(timeout=max(1.0, t0 + fl.HANG_S + 60 - time.time()))
    g.close()
    for s in drained:
        cl.ctl("undrain", s)
    router_died = killed and victim == "router"
    for i, r in enumerate(runs):
        o = out[i] or ("hang", None, "the client thread never returned")
        out[i] = o
        ref = refs[r["id"]]
        v = fl.judge(o, r, ref, router_died)
        if v:
            violations.append("request %d (%s%s%s): %s" % (
                r["id"], r["api"], " stream" if r["stream"] and r["api"] != "grpc" else "",
                " cancel@%d" % r["cancel_after"] if r["cancel_after"] else
                " deadline %.2fs" % r["deadline"] if r["deadline"] else "", v))
    if kind == "stop-router":
        # its own stop is no node's silence: every node stays in the pool
        now = cl.metrics("router").get("baton_router_node_expiries_total")
        if now != expiries:
            violations.append("the router, stopped for %.2fs, expired nodes on "
                              "resuming (node expiries %s -> %s)" % (pause, expiries, now))
    dead = [n for n in cl.proc if n != victim and not cl.alive(n)]
    if dead:
        violations.append("died besides the victim: %s" % dead)
    if kind.startswith("stop") and not cl.alive(victim):
        violations.append("the stopped victim %s died" % victim)
    held = quiet_report(cl, {victim} if killed else set())
    violations += ["still held after the load: " + h for h in held]
    if killed and not cl.start(victim):
        violations.append("the victim %s did not restart" % victim)
    else:
        violations += serves(cl, victim, rnd, pb)
    if VERBOSE:
        for r, o in zip(runs, out):
            if o[0] != "done":
                print("#   request %d (%s): %s %s" % (r["id"], r["api"], o[0], o[2]))
    counts = {k: sum(1 for o in out if o[0] == k) for k in OUTCOMES}
    counts["in-flight"] = in_flight
    if kind in NET_KINDS:
        victim += " " + what
        counts["across"], counts["across-failed"] = crossed
    return victim, t_fault, pause if not killed else None, counts, violations


def link_transfers(cl, pair):
    """[transfers, failed transfers] of the pair's prefill node to its
    decode node so far."""
    p, d = pair.split("-")
    m = cl.metrics(p)
    return [int(m.get('baton_node_kv_%s_total{decode="%s"}' % (k, d), 0))
            for k in ("transfers", "transfer_errors")]


def net_fault(cl, kind, pair, rnd):
    """Starts a network fault between the pair "pX-dY"; what it is."""
    a, b = pair.split("-")
    if kind == "net-partition":
        cl.net.drop(a, b)
        return "partitioned"
    if kind == "net-loss":
        pct = rnd.randrange(5, 60)
        cl.net.drop(a, b, pct)
        return "losing %d%%" % pct
    ms = rnd.randrange(10, 300)
    cl.net.delay(a, b, ms)
    return "delayed %d ms each way" % ms


def reference(cl, pb, pool):
    """The pool's outputs on the undisturbed cluster (all at once) and the
    load's duration; bails when one does not complete."""
    runs = [dict(s, cancel_after=None, deadline=None) for s in pool]
    rnd = random.Random(0)
    expiries = cl.metrics("router").get("baton_router_node_expiries_total")
    g = fl.Grpc(pb[0], pb[1], cl.grpc["router"], cl.host("router"))
    t0 = time.time()
    threads, out = fl.run_load(g, cl.http["router"], runs,
                               [rnd.uniform(0, 0.5) for _ in runs], cl.host("router"))
    for t in threads:
        t.join(timeout=fl.HANG_S + 30)
    load_s = time.time() - t0
    # a request that failed (a heartbeat late on a loaded machine) runs
    # again alone, twice at most
    for _ in range(2):
        again = [i for i, o in enumerate(out) if o is None or o[0] != "done" or o[2]]
        for i in again:
            print("# reference request %d again: %s" % (i, out[i]))
            th, o1 = fl.run_load(g, cl.http["router"], [runs[i]], [0],
                                 cl.host("router"))
            th[0].join(timeout=fl.HANG_S + 30)
            out[i] = o1[0]
    g.close()
    for r, o in zip(runs, out):
        if o is None or o[0] != "done" or o[2]:
            nc.bail("the undisturbed reference run failed request %d: %s" % (r["id"], o))
    # the reference itself against baton-run: one greedy or seeded gRPC request
    r = next(r for r in runs if r["api"] == "grpc")
    want = nc.run_ref(cl.model, r["ids"], r["max_tokens"], r["temperature"] or None,
                      r["seed"] if r["temperature"] else None)
    nc.tap(out[r["id"]][1] == want, "the undisturbed cluster's reference equals "
           "baton-run (request %d, %d tokens)" % (r["id"], len(want or [])))
    return [o[1] for o in out], load_s


def print_table(table, times, skipped):
    cols = ["trials", "in-flight"] + OUTCOMES[:-1] + ["violations"]
    print("#\n# %-14s" % "fault" + "".join("%11s" % c for c in cols) + "%10s" % "s/trial")
    for kind, row in table.items():
        print("# %-14s" % kind + "".join("%11d" % row.get(c, 0) for c in cols) +
              "%10.1f" % (times[kind] / max(1, row["trials"])))
    for kind, row in table.items():
        if "across" in row:
            print("# %-14s %d kv transfers across the faulty links while faulty "
                  "(%d failed)" % (kind, row["across"], row["across-failed"]))
    for kind, why in skipped.items():
        print("# %-14s skipped: %s" % (kind, why))
    sys.stdout.flush()


def bring_up(seed, pool_n, prefix, net=None):
    """The cluster (its nodes in net's namespaces when given), ready, and
    the pool's reference: (cluster, stubs, pool, reference outputs, the
    reference load's seconds)."""
    tmp, model, env = nc.setup(prefix)
    env["UCX_POSIX_ERROR_HANDLING"] = "y"
    env["UCX_SYSV_ERROR_HANDLING"] = "y"
    import front_grpc   # on the path with node_cluster
    stubs = front_grpc.stubs(tempfile.mkdtemp(dir=tmp))
    pb = (stubs[0], stubs[1])
    cl = fc.Cluster(tmp, model, env, net)
    failed = cl.start_all()
    if failed:
        nc.bail("%s did not start (see %s/%s.err)" % (failed, tmp, failed))
    nc.tap(cl.ready(), "the cluster is ready: router, kvstore, 2 prefill, 2 decode")
    pool = fl.make_pool(seed, pool_n)
    refs, load_s = reference(cl, pb, pool)
    print("# reference load: %d requests in %.1fs" % (pool_n, load_s))
    return cl, pb, pool, refs, min(max(load_s, 0.5), 10.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=int(os.environ.get("TRIALS", 100)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 1)))
    ap.add_argument("--kinds", default=",".join(SIGNAL_KINDS + NET_KINDS),
                    help="fault kinds, comma-separated; 'signal' and 'net' name "
                    "their groups")
    ap.add_argument("--mode", default="tcp", choices=["tcp", "shm"])
    ap.add_argument("--requests", default="6,14", help="min,max requests of a trial")
    ap.add_argument("--pool", type=int, default=24, help="requests in the seeded pool")
    ap.add_argument("--verbose", action="store_true",
                    help="print each request that did not complete, with why")
    ap.add_argument("--pause", default="0.2,5",
                    help="min,max seconds a stop or a network fault lasts")
    a = ap.parse_args()
    global VERBOSE, PAUSE
    VERBOSE = a.verbose
    PAUSE = tuple(float(x) for x in a.pause.split(","))
    nc.MODE = a.mode
    groups = {"signal": SIGNAL_KINDS, "net": NET_KINDS}
    kinds = [x for k in a.kinds.split(",") if k for x in groups.get(k, [k])]
    bad = [k for k in kinds if k not in SIGNAL_KINDS + NET_KINDS]
    if bad:
        ap.error("unknown fault kinds %s (known: %s)" % (bad, SIGNAL_KINDS + NET_KINDS))
    nreq = tuple(int(x) for x in a.requests.split(","))
    nreq = (nreq[0], nreq[1] + 1)
    print("# seed %d, %d trials per kind, %s transport" % (a.seed, a.trials, a.mode))
    skipped = {}
    net_kinds = [k for k in kinds if k in NET_KINDS]
    if net_kinds:
        why = netns.probe()
        for k in net_kinds:
            if k in why:
                skipped[k] = why[k]
                print("# %s skipped: %s" % (k, why[k]))
        net_kinds = [k for k in net_kinds if k not in why]
    sig_kinds = [k for k in kinds if k in SIGNAL_KINDS]
    if not sig_kinds and not net_kinds:
        print("1..0 # SKIP " + "; ".join(sorted(set(skipped.values()))))
        return
    table, times = {}, {}
    tmp, tmps = None, []
    # the signal kinds on loopback, the network kinds on a cluster in
    # namespaces: one cluster each, one after the other
    for group, net in ((sig_kinds, False), (net_kinds, True)):
        if not group:
            continue
        ns = None
        if net:
            ns = netns.Net(fc.NODES)
            try:
                ns.up()
            except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                for k in group:
                    skipped[k] = "the namespaces could not be made: %s" % e
                    print("# %s skipped: %s" % (k, skipped[k]))
                continue
        cl, pb, pool, refs, load_s = bring_up(a.seed, a.pool, "baton-fault-", ns)
        tmp = cl.tmp
        tmps.append(tmp)
        for kind in group:
            run_kind(cl, pb, pool, refs, kind, a, load_s, nreq, table, times)
        nc.cleanup()
        if ns:
            ns.down()
    print_table(table, times, skipped)
    if tmp is None:
        print("1..0 # SKIP " + "; ".join(sorted(set(skipped.values()))))
        return
    if not nc.FAILED:
        for t in tmps[:-1]:
            subprocess.run(["rm", "-rf", t])
    nc.finish(tmp)


def run_kind(cl, pb, pool, refs, kind, a, load_s, nreq, table, times):
    """--trials trials of one fault kind, a TAP line each, summed in table."""
    row = table.setdefault(kind, {"trials": 0, "violations": 0})
    times[kind] = 0.0
    for i in range(a.trials):
        seed = random.Random("%d/%s/%d" % (a.seed, kind, i)).randrange(1 << 31)
        t0 = time.time()
        victim, t_fault, pause, counts, violations = trial(
            cl, pb, pool, refs, kind, seed, load_s, nreq)
        times[kind] += time.time() - t0
        row["trials"] += 1
        row["violations"] += len(violations)
        for k, v in counts.items():
            row[k] = row.get(k, 0) + v
        nc.tap(not violations, "%s trial %d (seed %d): %s at %.2fs%s: %s" % (
            kind, i, seed, victim, t_fault,
            (", healed after %.2fs" if kind in NET_KINDS else
             ", continued after %.2fs") % pause if pause else "",
            " ".join("%d %s" % (v, k) for k, v in counts.items() if v)),
            *violations)

if __name__ == "__main__":
    nc.run(main)
