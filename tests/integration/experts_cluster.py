#!/usr/bin/python3
"""Expert devices on live nodes: a router, a prefill and a decode node
serving the built-in MoE model (baton-mkmodel builtin-moe) with
--expert-devices 2. Checks:
 A. plans applied under load (BATON_TEST_EXPERT_PLANS: each window every
    expert moves one device on, a new version): greedy tokens of requests
    sent before, during and after the plan changes, several at once, are
    identical to baton-run's on one device; the nodes' plan version
    metric rises; per-device load and balancedness are exported.
 B. with a real baton-kvstore (--kvstore): the nodes report statistics and
    ask for the plan; once the kvstore serves one, the plan version in
    force follows it and tokens stay identical. Skipped, with the reason,
    while the kvstore answers GetPlacement UNIMPLEMENTED.
 C. plans given over real gRPC by a KvStore stand-in (python3-grpcio,
    ReportExpertStats and GetPlacement only): the nodes' reports carry the
    model, role, window counts and plan version; a plan for another device
    count is refused (old plan kept, counted, logged); a plan with
    replicas is applied, its version reported, tokens identical.

usage: experts_cluster.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import os
import re
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


def cluster(tmp, model, env, tag, extra, kvstore=None):
    """router + prefill + decode with `extra` node flags: (router grpc,
    router http, prefill http, decode http)."""
    _, rg, rh = nc.start("router-" + tag,
                         [os.path.join(BUILD, "router/baton-router"),
                          "--model", model, "--grpc-port", "0",
                          "--http-port", "0", "--heartbeat", "100ms"],
                         env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1",
              "--expert-devices", "2", "--expert-window", "300ms"] + extra
    if kvstore is not None:
        common += ["--kvstore", "ipv4:127.0.0.1:%d" % kvstore]
    _, _, ph = nc.start("prefill-" + tag,
                        [os.path.join(BUILD, "prefill_node/baton-prefill")]
                        + common + ["--max-prefill-tokens", "32"], env, tmp)
    _, _, dh = nc.start("decode-" + tag,
                        [os.path.join(BUILD, "decode_node/baton-decode")]
                        + common + ["--kv-blocks", "512"], env, tmp)
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


def part_b(tmp, model, env, refs):
    _, kg, _ = nc.start("kvstore", [os.path.join(BUILD, "kvstore/baton-kvstore"),
                                    "--grpc-port", "0", "--http-port", "0",
                                    "--disk-dir", os.path.join(tmp, "disk"),
                                    "--dram-bytes", "16M",
                                    # plan from the first windows: a few
                                    # requests' tokens, no wait between tries
                                    "--placement-min-tokens", "8",
                                    "--placement-interval", "1s",
                                    "--placement-threshold", "1.0",
                                    "--placement-min-gain", "0"], env, tmp)
    rg, rh, ph, dh = cluster(tmp, model, env, "b", [], kvstore=kg)
    nc.tap(nc.wait_ready(rh), "B: cluster ready with a kvstore")
    before = [nc.gen(rg, PROMPTS[k], 12) for k in range(3)]
    nc.tap(before == refs, "B: tokens before any plan", "got %s" % before)
    # a window or two for the nodes to report and ask for the plan
    deadline = time.time() + 10
    unimpl = False
    while time.time() < deadline and not unimpl:
        for name in ("prefill-b", "decode-b"):
            with open(os.path.join(tmp, name + ".err")) as f:
                unimpl |= "does not serve placement plans" in f.read()
        time.sleep(0.3)
    if unimpl:
        print("ok %d - B: plans from the kvstore # SKIP the kvstore answers "
              "GetPlacement UNIMPLEMENTED (its placement service is not "
              "built yet)" % (nc.N + 1), flush=True)
        nc.N += 1
        return
    v = wait_metric(dh, "baton_node_expert_plan_version", lambda x: x > 0,
                    secs=60)
    nc.tap(v is not None and v > 0, "B: the decode node runs the kvstore's "
           "plan", "plan version %s" % v)
    after = [nc.gen(rg, PROMPTS[k], 12) for k in range(3)]
    nc.tap(after == refs, "B: tokens identical under the kvstore's plan",
           "got %s" % after)


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
