#!/usr/bin/python3
"""Expert devices on live nodes: a router, a prefill and a decode node
serving the built-in MoE model (baton-mkmodel builtin-moe) with
--expert-devices 2. Checks:
 A. plans applied under load (BATON_TEST_EXPERT_PLANS: each window every
    expert moves one device on, a new version): greedy tokens of requests
    sent before, during and after the plan changes, several at once, are
    identical to baton-run's on one device; the nodes' plan version
    metric rises; per-device load and balancedness are exported.
 B. with a real baton-kvstore (--kvstore, --router): a prompt that
    repeats one token routes the decode node's tokens onto a few experts,
    so under the placement without a plan (a store that plans only on
    Rebalance) the node and `batonctl placement -o json` measure < 0.85;
    the store restarted on the same port and folders with the re-plan
    rule publishes a plan, the decode node applies it under load and its
    balancedness averaged over 8 windows rises by >= 0.1 (batonctl too);
    every request sent before, during and after the switch returns
    baton-run's tokens; after a SIGKILL the store, restarted, serves the
    same version and the nodes keep it; a restarted decode node fetches
    and applies the plan in force, tokens identical.
 C. plans given over real gRPC by a KvStore stand-in (python3-grpcio,
    ReportExpertStats and GetPlacement only): the nodes' reports carry the
    model, role, window counts and plan version; a plan for another device
    count is refused (old plan kept, counted, logged); a plan with
    replicas is applied, its version reported, tokens identical.

usage: experts_cluster.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

BUILD = nc.BUILD


def metric_sum(port, name):
    """Sum of every series of `name`, None when it has none."""
    _, body = nc.http_get(port, "/metrics")
    vals = [float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
            if l.startswith(name + " ") or l.startswith(name + "{")]
    return sum(vals) if vals else None


def wait_metric(port, name, pred, secs=30):
    deadline = time.time() + secs
    v = None
    while time.time() < deadline:
        v = metric_sum(port, name)
        if v is not None and pred(v):
            return v
        time.sleep(0.2)
    return v


DECODE_B = []


def cluster(tmp, model, env, tag, extra, kvstore=None, router=None):
    """router (unless given as (grpc, http)) + prefill + decode with
    `extra` node flags: (router grpc, router http, prefill http, decode
    http); DECODE_B holds the decode node's process and command."""
    if router is None:
        _, rg, rh = nc.start("router-" + tag,
                             [os.path.join(BUILD, "router/baton-router"),
                              "--model", model, "--grpc-port", "0",
                              "--http-port", "0", "--heartbeat", "100ms"],
                             env, tmp)
    else:
        rg, rh = router
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1",
              "--expert-devices", "2", "--expert-window", "300ms"] + extra
    if kvstore is not None:
        common += ["--kvstore", "ipv4:127.0.0.1:%d" % kvstore]
    _, _, ph = nc.start("prefill-" + tag,
                        [os.path.join(BUILD, "prefill_node/baton-prefill")]
                        + common + ["--max-prefill-tokens", "32"], env, tmp)
    dcmd = ([os.path.join(BUILD, "decode_node/baton-decode")] + common +
            ["--kv-blocks", "512"])
    dp, _, dh = nc.start("decode-" + tag, dcmd, env, tmp)
    DECODE_B[:] = [dp, dcmd]
    return rg, rh, ph, dh


PROMPTS = [[(i * 37 + k * 11 + 5) % 4000 for i in range(1, 20 + 7 * k)]
           for k in range(3)]


def part_a(tmp, model, env, refs):
    env = dict(env)
    env["BATON_TEST_EXPERT_PLANS"] = "1"
    rg, rh, ph, dh = cluster(tmp, model, env, "a", [])
    nc.tap(nc.wait_ready(rh), "A: router ready with 2-device MoE nodes")
    v0 = {p: metric_sum(p, "baton_node_expert_plan_version") for p in (ph, dh)}
    results, lock = [], threading.Lock()

    def client(k):
        for _ in range(3):
            got = nc.gen(rg, PROMPTS[k], 12)
            with lock:
                results.append((k, got))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    bad = [(k, g) for k, g in results if g != refs[k]]
    nc.tap(len(results) == 9 and not bad,
           "A: 9 requests (3 at once) while plans change give baton-run's "
           "tokens", "mismatches: %s" % bad[:3], "refs: %s" % refs)
    v1 = {p: wait_metric(p, "baton_node_expert_plan_version",
                         lambda v, p=p: v >= (v0[p] or 0) + 2)
          for p in (ph, dh)}
    nc.tap(all(v1[p] is not None and v1[p] >= (v0[p] or 0) + 2
               for p in (ph, dh)),
           "A: both nodes applied new plans during the run",
           "before %s after %s" % (v0, v1))
    # after the changes, one more request each
    after = [nc.gen(rg, PROMPTS[k], 12) for k in range(3)]
    nc.tap(after == refs, "A: tokens identical after the plan changes",
           "got %s" % after)
    applied = metric_sum(dh, "baton_node_expert_plans_applied_total")
    moved = metric_sum(dh, "baton_node_expert_copies_moved_total")
    refused = metric_sum(dh, "baton_node_expert_plan_refused_total")
    nc.tap(applied and applied >= 2 and moved and moved > 0 and refused == 0,
           "A: plans applied, experts copied, none refused",
           "applied %s moved %s refused %s" % (applied, moved, refused))
    _, body = nc.http_get(dh, "/metrics")
    devs = re.findall(r'^baton_node_expert_device_load\{device="(\d+)"\}',
                      body, re.M)
    bal = nc.gauge(dh, "baton_node_expert_balancedness")
    nc.tap(sorted(devs) == ["0", "1"] and bal is not None and 0 < bal <= 1,
           "A: per-device load for devices 0 and 1, balancedness in (0, 1]",
           "devices %s balancedness %s" % (devs, bal))
    nc.cleanup()
    del nc.PROCS[:]


def kvstore(tmp, env, name, port, router, threshold):
    """A baton-kvstore on `port` (0: any) planning from the nodes' reports
    when their balancedness is under `threshold` (0: only on Rebalance):
    its first tries come after a few requests' tokens, a second chance a
    second later, and a plan must promise 0.05 more than measured."""
    return nc.start(name, [os.path.join(BUILD, "kvstore/baton-kvstore"),
                           "--grpc-port", str(port), "--http-port", "0",
                           "--disk-dir", os.path.join(tmp, "disk"),
                           "--dram-bytes", "16M", "--router", router,
                           "--placement-threshold", str(threshold),
                           "--placement-min-tokens", "8",
                           "--placement-interval", "1s",
                           "--placement-min-gain", "0.05"], env, tmp)


def stop(proc, sig):
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def ctl_placement(router_grpc, role):
    """The row of `batonctl placement -o json` for (tiny, role), or None."""
    r = subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router",
                        "ipv4:127.0.0.1:%d" % router_grpc, "placement",
                        "-o", "json"], capture_output=True, text=True,
                       timeout=20)
    try:
        rows = json.loads(r.stdout) if r.returncode == 0 else []
    except ValueError:
        rows = []
    return next((x for x in rows if x.get("model") == "tiny" and
                 x.get("role") == role), None)


wait_for = nc.wait_for


def mean_balancedness(port, n=8):
    """The node's balancedness averaged over about n windows (300 ms)."""
    vals = []
    for _ in range(n):
        time.sleep(0.35)
        v = nc.gauge(port, "baton_node_expert_balancedness")
        if v is not None:
            vals.append(v)
    return sum(vals) / len(vals) if vals else None


class Load:
    """Clients sending the skewed prompt in a loop; every answer kept."""

    def __init__(self, rg, n=3):
        self.rg, self.done, self.got = rg, threading.Event(), []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.client)
                        for _ in range(n)]
        for t in self.threads:
            t.start()

    def client(self):
        while not self.done.is_set():
            g = nc.gen(self.rg, SKEWED, 16)
            with self.lock:
                self.got.append(g)

    def stop(self):
        self.done.set()
        for t in self.threads:
            t.join(timeout=120)
        with self.lock:
            return list(self.got)


# Repeating one token routes the built-in MoE model's greedy decode onto a
# few experts: under the placement without a plan (expert e on device
# e mod 2) the decode node measures about 0.72 (found by reading
# baton_node_expert_balancedness over several prompts).
SKEWED = [42] * 24


def part_b(tmp, model, env, refs):
    """The kvstore's plans on live nodes: skew measured, a plan from the
    re-plan rule that raises the measured balancedness, identical tokens
    before, during and after, a kvstore restart and a node restart."""
    ref_skew = nc.run_ref(model, SKEWED, 16)
    _, rg, rh = nc.start("router-b",
                         [os.path.join(BUILD, "router/baton-router"),
                          "--model", model, "--grpc-port", "0",
                          "--http-port", "0", "--heartbeat", "100ms"],
                         env, tmp)
    router = "ipv4:127.0.0.1:%d" % rg
    # 1. a store that plans only on Rebalance: the skew is measured as is
    kv, kg, _ = kvstore(tmp, env, "kvstore-b1", 0, router, 0)
    _, _, ph, dh = cluster(tmp, model, env, "b", [], kvstore=kg,
                           router=(rg, rh))
    nc.tap(nc.wait_ready(rh), "B: cluster ready with a kvstore")
    before = [nc.gen(rg, PROMPTS[k], 12) for k in range(3)]
    nc.tap(before == refs, "B: tokens before any plan", "got %s" % before)
    load = Load(rg)
    # the store's figure is the latest window's: the skewed ones only
    row = wait_for(lambda: (lambda r: r if r and 0 < r["balancedness"] < 0.85
                            else None)(ctl_placement(rg, "decode")))
    b0 = mean_balancedness(dh)
    nc.tap(row is not None and row["version"] == 0 and
           row["balancedness"] < 0.85 and b0 is not None and b0 < 0.85 and
           metric_sum(dh, "baton_node_expert_plan_version") == 0,
           "B: skewed prompts: the decode node measures %s under the "
           "placement without a plan, batonctl placement shows it"
           % (b0 and "%.3f" % b0), "node %s batonctl %s" % (b0, row))

    # 2. the same store with the re-plan rule (threshold 0.9), same port
    # and folders; the load goes on while the plan comes and switches
    stop(kv, signal.SIGTERM)
    kv, _, _ = kvstore(tmp, env, "kvstore-b2", kg, router, 0.9)
    v = wait_metric(dh, "baton_node_expert_plan_version", lambda x: x > 0,
                    secs=60)
    with load.lock:
        at_switch = len(load.got)
    nc.tap(v is not None and v > 0, "B: the decode node applies the "
           "kvstore's plan (version %d) under load" % (v or 0))
    time.sleep(0.7)  # the windows after the switch only
    b1 = mean_balancedness(dh)
    kb0 = row["balancedness"] if row else 1.0
    row = wait_for(lambda: (lambda r: r if r and r["version"] > 0 and
                            r["balancedness"] >= kb0 + 0.1 else None)(
                                ctl_placement(rg, "decode")))
    nc.tap(b0 is not None and b1 is not None and b1 >= b0 + 0.1 and
           row is not None,
           "B: the plan raises the decode node's measured balancedness "
           "(%s -> %s over 8 windows), batonctl placement shows it"
           % (b0 and "%.3f" % b0, b1 and "%.3f" % b1),
           "batonctl %s" % row)
    got = load.stop()
    bad = [g for g in got if g != ref_skew]
    nc.tap(at_switch >= 3 and len(got) > at_switch + 3 and not bad,
           "B: %d requests (%d answered before the switch) sent before, "
           "during and after the plan change return baton-run's tokens"
           % (len(got), at_switch),
           "mismatches: %s" % bad[:3], "ref: %s" % ref_skew)
    after = [nc.gen(rg, PROMPTS[k], 12) for k in range(3)]
    nc.tap(after == refs, "B: tokens identical under the kvstore's plan",
           "got %s" % after)

    # 3. SIGKILL the store, restart it on the same folders (planning only
    # on Rebalance: a version it serves comes from its file)
    vk = ctl_placement(rg, "decode")
    vk = vk and vk["version"]
    pv = metric_sum(ph, "baton_node_expert_plan_version")
    stop(kv, signal.SIGKILL)
    kv, _, _ = kvstore(tmp, env, "kvstore-b3", kg, router, 0)
    row = wait_for(lambda: (lambda r: r if r and r["version"] == vk
                            else None)(ctl_placement(rg, "decode")))
    nc.tap(vk and row is not None, "B: after a kvstore SIGKILL and restart "
           "batonctl placement shows version %s" % vk, "row %s" % row)
    extra = [nc.gen(rg, PROMPTS[0], 12) for _ in range(3)]
    # the restarted store measures a window only when it ran under the
    # plan in force: a figure means the decode node reported under vk
    row = wait_for(lambda: (lambda r: r if r and r["balancedness"] > 0
                            else None)(ctl_placement(rg, "decode")), 30)
    nc.tap(extra == [refs[0]] * 3 and row is not None and
           row["version"] == vk and
           metric_sum(dh, "baton_node_expert_plan_version") == vk and
           metric_sum(ph, "baton_node_expert_plan_version") == pv and
           metric_sum(ph, "baton_node_expert_plan_refused_total") == 0,
           "B: the nodes keep version %s across the kvstore restart" % vk,
           "got %s version %s" % (
               extra, metric_sum(dh, "baton_node_expert_plan_version")))

    # 4. a new decode node fetches the plan in force
    stop(DECODE_B[0], signal.SIGTERM)
    _, _, dh2 = nc.start("decode-b2", DECODE_B[1], env, tmp)
    v2 = wait_metric(dh2, "baton_node_expert_plan_version",
                     lambda x: x == vk, secs=60)
    nc.tap(v2 == vk, "B: a restarted decode node fetches and applies plan "
           "%s" % vk, "version %s" % v2)
    got = wait_for(lambda: nc.gen(rg, SKEWED, 16) == ref_skew, secs=30)
    after = [nc.gen(rg, PROMPTS[k], 12) for k in range(3)]
    nc.tap(got and after == refs, "B: tokens identical on the restarted "
           "decode node", "got %s" % after)
    nc.cleanup()
    del nc.PROCS[:]


def load_stubs(out):
    proto = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "proto")
    subprocess.run(["protoc", "-I", proto, "--python_out=" + out,
                    "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                    "common.proto", "kvstore.proto"], check=True)
    sys.path.insert(0, out)
    import common_pb2
    import kvstore_pb2
    import kvstore_pb2_grpc
    return common_pb2, kvstore_pb2, kvstore_pb2_grpc


def part_c(tmp, model, env, refs):
    import grpc
    cpb, kpb, kgrpc = load_stubs(tempfile.mkdtemp(dir=tmp))
    state = {"plan": cpb.PlacementPlan(), "reports": []}
    lock = threading.Lock()

    class Standin(kgrpc.KvStoreServicer):
        def ReportExpertStats(self, req, ctx):
            with lock:
                state["reports"].append(req)
            return kpb.ExpertStatsAck()

        def GetPlacement(self, req, ctx):
            with lock:
                return state["plan"]

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    kgrpc.add_KvStoreServicer_to_server(Standin(), srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        rg, rh, ph, dh = cluster(tmp, model, env, "c", [], kvstore=port)
        nc.tap(nc.wait_ready(rh), "C: cluster ready with a KvStore stand-in")
        got = [nc.gen(rg, PROMPTS[k], 12) for k in range(3)]
        nc.tap(got == refs, "C: tokens under the built-in plan", got)
        deadline = time.time() + 20
        dec = []
        while time.time() < deadline and not dec:
            with lock:
                dec = [r for r in state["reports"]
                       if r.role == cpb.NODE_ROLE_DECODE and r.tokens > 0]
            time.sleep(0.2)
        r = dec[0] if dec else None
        ok = (r is not None and r.model == "tiny" and len(r.layers) == 4 and
              all(len(l.counts) == 8 for l in r.layers) and
              sum(r.layers[0].counts) == 2 * r.tokens and
              r.placement_version == 0 and
              len(r.device_load) == 2 and
              sum(r.device_load) == sum(sum(l.counts) for l in r.layers) and
              0 < r.balancedness <= 1 and
              r.window_end_unix_ms >= r.window_start_unix_ms and
              any(len(l.transitions) > 0 for l in r.layers[:3]))
        nc.tap(ok, "C: the decode node reports its window: model, role, "
               "counts per MoE layer, transitions, per-device load, "
               "balancedness, plan version", r)
        with lock:
            pre = [x for x in state["reports"]
                   if x.role == cpb.NODE_ROLE_PREFILL and x.tokens > 0]
        nc.tap(len(pre) > 0, "C: the prefill node reports as NODE_ROLE_PREFILL")

        # a plan for 3 devices: refused, the old one stays
        bad = cpb.PlacementPlan(model="tiny", version=5, n_devices=3)
        for l in range(4):
            bad.layers.add(layer=l, device=[e % 3 for e in range(8)])
        with lock:
            state["plan"] = bad
        refused = wait_metric(dh, "baton_node_expert_plan_refused_total",
                              lambda v: v >= 1)
        ver = nc.gauge(dh, "baton_node_expert_plan_version")
        with open(os.path.join(tmp, "decode-c.err")) as f:
            log = f.read()
        nc.tap(refused and refused >= 1 and ver == 0 and
               "expert plan 5 refused, plan 0 stays: plan for 3 devices, "
               "the node has 2" in log,
               "C: a plan for 3 devices is refused with its reason, plan 0 "
               "stays", "refused %s version %s" % (refused, ver))

        # a good plan with replicas: applied
        good = cpb.PlacementPlan(model="tiny", version=7, n_devices=2)
        for l in range(4):
            lp = good.layers.add(layer=l, device=[(e + l) % 2
                                                  for e in range(8)])
            lp.replicas.add(expert=l, devices=[0, 1])
        with lock:
            state["plan"] = good
        ver = wait_metric(dh, "baton_node_expert_plan_version",
                          lambda v: v == 7)
        pver = wait_metric(ph, "baton_node_expert_plan_version",
                           lambda v: v == 7)
        nc.tap(ver == 7 and pver == 7, "C: both nodes apply plan 7 "
               "(replicas included)", "decode %s prefill %s" % (ver, pver))
        got = [nc.gen(rg, PROMPTS[k], 12) for k in range(3)]
        nc.tap(got == refs, "C: tokens identical under plan 7", got)
        deadline = time.time() + 20
        seen = False
        while time.time() < deadline and not seen:
            with lock:
                seen = any(x.placement_version == 7 and x.tokens > 0
                           for x in state["reports"])
            time.sleep(0.2)
        nc.tap(seen, "C: later reports name plan 7")
    finally:
        nc.cleanup()
        del nc.PROCS[:]
        srv.stop(0)


def main():
    tmp, _, env = nc.setup("baton-experts-it-")
    env["UCX_POSIX_ERROR_HANDLING"] = "y"
    env["UCX_SYSV_ERROR_HANDLING"] = "y"
    model = os.path.join(tmp, "moe", "tiny")
    subprocess.run([os.path.join(BUILD, "tools/baton-mkmodel"), "builtin-moe",
                    "--out", model], check=True, capture_output=True,
                   timeout=60)
    refs = [nc.run_ref(model, p, 12) for p in PROMPTS]
    nc.tap(all(r is not None and len(r) == 12 for r in refs),
           "baton-run's reference tokens on one device", refs)
    part_a(tmp, model, env, refs)
    part_c(tmp, model, env, refs)
    part_b(tmp, model, env, refs)
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
