#!/usr/bin/python3
"""Local or disaggregated prefill per request (docs/internals/router.md,
Local or disaggregated prefill) on real processes: three routers (--disagg
auto, always, never) and two nodes registered with all of them, a
`--role both` node b1 and a prefill node p1, on baton-mkmodel's tiny
model. Checks: on the auto router a short prompt stays on b1, a long
uncached one goes p1 -> b1, a long one whose prefix b1 holds stays on b1,
each read from baton_router_disagg_decisions_total on /metrics, the log
line giving the inputs (the default transfer cost until p1 measured one,
then its p50); the forced routers do as told; on a fourth (auto, a TPOT
SLO of 0.01 ms) a short prompt goes to p1 only while b1 decodes a
sequence with no time to spare (the stall budget); every answer equals
baton-run's tokens.

usage: disagg_cluster.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import threading

import node_cluster as nc

BUILD = nc.BUILD
MIN_TOKENS = 48     # blocks of 16: below 3 blocks uncached stays local


ctl = nc.ctl


def nodes(target):
    """The router's READY nodes: {id: node json}, None on error."""
    r = ctl(target, "--json", "nodes")
    if r.returncode != 0:
        return None
    try:
        return {n["node_id"]: n for n in json.loads(r.stdout)["nodes"]
                if n.get("state") == "NODE_STATE_READY"}
    except (ValueError, KeyError):
        return None


wait_for = nc.wait_for


def idle(target):
    """Every node reported no queued prefill and no running sequence, so
    the next choice does not see the last request's load."""
    ns = nodes(target)
    return ns is not None and len(ns) == 2 and all(
        int(n.get("queued_prefill_tokens", 0)) == 0 and
        int(n.get("running_sequences", 0)) == 0 for n in ns.values())


def decisions(http_port):
    """{(decision, reason): count} from the router's /metrics."""
    _, body = nc.http_get(http_port, "/metrics")
    out = {}
    for line in body.splitlines():
        if not line.startswith("baton_router_disagg_decisions_total{"):
            continue
        d = re.search(r'decision="(\w+)"', line)
        w = re.search(r'reason="(\w+)"', line)
        out[(d.group(1), w.group(1))] = float(line.rsplit(" ", 1)[1])
    return out


def kv_events(http_port):
    _, body = nc.http_get(http_port, "/metrics")
    m = re.search(r'^baton_router_node_messages_total\{kind="kv_events"\} (\S+)$',
                  body, re.M)
    return float(m.group(1)) if m else 0.0


def transfer_p50(target):
    """p1 -> b1's measured transfer tail (ms) as the router has it, None
    until p1 reported a transfer."""
    r = ctl(target, "--json", "transfer-health")
    try:
        for p in json.loads(r.stdout).get("pairs", []):
            if (p.get("prefill_node"), p.get("decode_node")) == ("p1", "b1") \
                    and int(p.get("ops", 0)) > 0:
                return float(p.get("latency_p50_ms", 0.0))
    except ValueError:
        pass
    return None


def ids(seed, n):
    return [4091] + [(i * seed + 7) % 4000 for i in range(1, n)]


def main():
    tmp, model, env = nc.setup("baton-disagg-it-")
    routers = {}
    for mode in ("auto", "always", "never", "tight", "budget"):
        # the stall budget (tpot_budget below): tight, an SLO every
        # decoding sequence misses at once; budget, one a 4-token request
        # keeps with ~70 ms to spare; auto, one with seconds to spare
        slo = {"tight": ["--slo-tpot-ms", "0.01"],
               "budget": ["--slo-tpot-ms", "25", "--slo-ttft-ms", "60000"],
               "auto": ["--slo-tpot-ms", "1000", "--slo-ttft-ms", "60000"]
               }.get(mode, [])
        routers[mode] = nc.start(
            "router-" + mode,
            [os.path.join(BUILD, "router/baton-router"), "--model", model,
             "--grpc-port", "0", "--http-port", "0", "--heartbeat", "100ms",
             "--disagg", "auto" if mode in ("tight", "budget") else mode,
             "--disagg-min-tokens", str(MIN_TOKENS)] + slo + [
             # a transfer tail up to 0.7 s weighs less than the 74 tokens
             # the long prompts below save the decode node; until p1 has
             # measured one the default counts (50 tokens' worth)
             "--disagg-prefill-rate", "0.1", "--disagg-transfer-ms", "500"],
            env, tmp)
    targets = {m: "ipv4:127.0.0.1:%d" % r[1] for m, r in routers.items()}
    common = ["--model", model, "--router", ",".join(targets.values()),
              "--threads", "1"]
    nc.start("p1", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "p1"], env, tmp)
    nc.start("b1", [os.path.join(BUILD, "decode_node/baton-decode")] + common
             + ["--node-id", "b1", "--role", "both", "--kv-blocks", "512"],
             env, tmp)
    for m, t in targets.items():
        nc.tap(wait_for(lambda: idle(t), 30),
               "router %s sees b1 and p1 ready" % m)
    ah, ag = routers["auto"][2], routers["auto"][1]

    def step(what, prompt, want, target="auto", cached_min=None):
        """One greedy request on a router: tokens equal baton-run's and
        the router counted the choice `want` = (decision, reason)."""
        wait_for(lambda: idle(targets[target]), 30)
        port = routers[target][2]
        before = decisions(port)
        ref = nc.run_ref(model, prompt, 8)
        got = nc.gen(routers[target][1], prompt, 8)
        counted = moved(before, decisions(port))
        nc.tap(ref is not None and got == ref,
               "%s: tokens equal baton-run (%s vs %s)" % (what, got, ref))
        nc.tap(counted == {want: 1.0},
               "%s: counted as %s/%s (%s)" % (what, want[0], want[1], counted))
        if cached_min is not None:
            nc.tap(nc.LAST.get("cached", 0) >= cached_min,
                   "%s: %s prompt tokens reused" % (what, nc.LAST.get("cached")))

    # auto: the choice follows the prompt's length ...
    step("short uncached prompt (20)", ids(13, 20), ("local", "short"))
    step("long uncached prompt (100)", ids(17, 100), ("disagg", "offload"))
    # the next choice weighs the transfer p1 measured, not the default
    measured = wait_for(lambda: transfer_p50(targets["auto"]), 30)
    nc.tap(measured is not None,
           "p1's heartbeats report its transfer to b1 (p50 %s ms)" % measured)
    step("long uncached prompt (74)", ids(19, 74), ("disagg", "offload"))
    # ... and where it is cached: b1 computes a 44-token prompt (short),
    # keeping its two full blocks; 30 more tokens leave 42 uncached on b1
    head = ids(23, 44)
    events = kv_events(ah)
    step("short prompt computed on b1 (44)", head, ("local", "short"))
    nc.tap(wait_for(lambda: kv_events(ah) > events, 30),
           "b1's stored blocks reached the router")
    step("long prompt whose prefix b1 holds (74, 32 cached)",
         head + ids(29, 31)[1:], ("local", "cached"), cached_min=32)
    # the log line names the choice and its inputs
    with open(os.path.join(tmp, "router-auto.err")) as f:
        log = f.read()
    nc.tap(re.search(r"local/cached \(prompt 74, uncached D 42 P 74, queued D "
                     r"\d+ P \d+, transfer [\d.]+ ms, cost local \d+ disagg "
                     r"\d+, rate D [\d.]+ P [\d.]+ tokens/ms, stall D [\d.]+ P "
                     r"[\d.]+ ms of budget D (inf|[\d.]+) P (inf|[\d.]+) ms\)",
                     log) is not None,
           "the placement's log line gives the choice and its inputs")
    first = re.search(r"\(prompt 100, .* transfer ([\d.]+) ms", log)
    second = re.search(r"\(prompt 74, uncached D 74 .* transfer ([\d.]+) ms", log)
    nc.tap(first is not None and first.group(1) == "500.00" and
           second is not None and measured is not None and
           second.group(1) == "%.2f" % measured,
           "the default transfer before p1 measured one, its p50 after "
           "(%s, %s; measured %s)" % (first and first.group(1),
                                      second and second.group(1), measured))
    pairs = re.findall(r"pair prefill (\w+) .* decode (\w+) .* (\w+)/(\w+) \(",
                       log)
    nc.tap(sorted(set(pairs)) == [("b1", "b1", "local", "cached"),
                                  ("b1", "b1", "local", "short"),
                                  ("p1", "b1", "disagg", "offload")],
           "local placements prefill on b1, disaggregated ones on p1 (%s)"
           % sorted(set(pairs)))

    # forced: the same prompts the other way, the same tokens
    step("--disagg always, short prompt", ids(31, 20), ("disagg", "forced"),
         target="always")
    step("--disagg never, long uncached prompt", ids(37, 100),
         ("local", "forced"), target="never")
    step("--disagg always, long prompt", ids(37, 100), ("disagg", "forced"),
         target="always")
    tpot_budget(routers, targets, model)
    nc.finish(tmp)


def tpot_budget(routers, targets, model):
    """The TPOT guard's stall budget on real processes. A short prompt
    stays on b1 while b1 decodes nothing, and also while it decodes a
    sequence that missed its TPOT SLO already (the tight router: nothing
    left to protect). A 1200-token prompt, placed while a 4-token request
    with a 1800-token prompt prefills on p1 to decode on b1 (p1 busy, so
    the costs keep it on b1): with a 25 ms TPOT SLO that request has about
    70 ms to spare, less than b1's prefill of the prompt (~200 ms here),
    so it goes p1 -> b1 (tpot); with a 1000 ms SLO it stays on b1 (busy).
    The nodes' measured speeds reach the router."""
    probe = ids(43, 20)
    ref = nc.run_ref(model, probe, 8)
    target, port = targets["tight"], routers["tight"][2]
    wait_for(lambda: idle(target), 30)
    before = decisions(port)
    got = nc.gen(routers["tight"][1], probe, 8)
    nc.tap(got == ref and moved(before, decisions(port)) ==
           {("local", "short"): 1.0},
           "tight SLO, b1 decodes nothing: a short prompt stays on b1")
    counted, got = beside(model, routers["tight"], target, ids(41, 8), 1500, probe, 8)
    nc.tap(got == ref and counted == {("local", "short"): 1.0},
           "tight SLO, b1 decodes a sequence that missed it already: the "
           "prompt still stays on b1 (%s)" % counted)
    for mode, want, seed in (("budget", ("disagg", "tpot"), 53),
                             ("auto", ("local", "busy"), 59)):
        counted, got = beside(model, routers[mode], targets[mode],
                              ids(seed + 1, 1800), 4,
                              ids(seed, 1200), 8, phase="prefilling")
        nc.tap(got == nc.run_ref(model, ids(seed, 1200), 8) and
               counted == {want: 1.0},
               "%s router: a 1200-token prompt beside a 4-token request "
               "prefilling on p1 for b1 is %s/%s (%s)" %
               (mode, want[0], want[1], counted))
    ns = nodes(targets["auto"]) or {}
    speeds = {k: (v.get("prefill_tokens_per_ms", 0), v.get("decode_step_ms", 0))
              for k, v in ns.items()}
    nc.tap(len(speeds) == 2 and all(p > 0 for p, _ in speeds.values()) and
           speeds["b1"][1] > 0,
           "both nodes report their measured prefill speed, b1 its decode "
           "step (%s)" % speeds)


def beside(model, router, target, bg_ids, bg_n, ids_, n, phase="decoding"):
    """Sends ids_ while a request of bg_ids (bg_n tokens) is in `phase` on
    that router: (the decisions counted for ids_, its tokens); the
    background request's tokens must equal baton-run's."""
    wait_for(lambda: idle(target), 30)
    bg_out = {}
    bg = threading.Thread(target=lambda: bg_out.update(
        toks=nc.gen(router[1], bg_ids, bg_n)))
    bg.start()

    def in_phase():
        r = ctl(target, "--json", "requests")
        try:
            return r.returncode == 0 and any(
                q.get("phase") == phase
                for q in json.loads(r.stdout).get("requests", []))
        except ValueError:
            return False
    wait_for(in_phase, 30, every=0.01)
    before = decisions(router[2])
    got = nc.gen(router[1], ids_, n)
    counted = moved(before, decisions(router[2]))
    bg.join()
    nc.tap(bg_out.get("toks") == nc.run_ref(model, bg_ids, bg_n),
           "the request beside it: its %d tokens equal baton-run's" %
           len(bg_out.get("toks") or []))
    return counted, got


def moved(before, after):
    return {k: after[k] - before.get(k, 0) for k in after
            if after[k] != before.get(k, 0)}


if __name__ == "__main__":
    nc.run(main)
