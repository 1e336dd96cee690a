#!/usr/bin/python3
"""The role controller (docs/internals/router.md, The role controller) on
real processes: a router with --rebalance-roles on, a fixed prefill node
p0, a flexible node f1 serving prefill and a fixed decode node d0 whose
KV pool holds two of the requests at a time. Checks: under a steady
load that fits, no move for many intervals; a burst that leaves requests
waiting for decode room (the decode side's queue grows) moves f1 to both
with the controller's figures as the reason (`batonctl events`, its log
line), the waiting requests then run, and every answer equals
baton-run's tokens; steady load after that moves nothing more (no
oscillation).

usage: rebalance_cluster.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import threading
import time

import node_cluster as nc

BUILD = nc.BUILD
N_TOK = 64
INTERVAL_MS = 500


def ctl(target, *args):
    return nc.ctl(target, *args, timeout=60)


def events(target):
    r = ctl(target, "--json", "events")
    try:
        return json.loads(r.stdout).get("events", [])
    except ValueError:
        return None


def roles(target):
    r = ctl(target, "--json", "nodes")
    try:
        return {n["node_id"]: n.get("role") for n in json.loads(r.stdout)["nodes"]}
    except (ValueError, KeyError):
        return {}


def ids(seed, n):
    return [4091] + [(i * seed + 7) % 4000 for i in range(1, n)]


def main():
    tmp, model, env = nc.setup("baton-rebalance-it-")
    _, rg, rh = nc.start("router", [
        os.path.join(BUILD, "router/baton-router"), "--model", model,
        "--grpc-port", "0", "--http-port", "0", "--heartbeat", "100ms",
        "--rebalance-roles", "on", "--rebalance-interval", "%dms" % INTERVAL_MS,
        "--rebalance-dwell", "1s", "--slo-ttft-ms", "60000",
        "--slo-tpot-ms", "5000", "--queue-timeout", "120s"], env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1"]
    nc.start("p0", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "p0"], env, tmp)
    nc.start("f1", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "f1", "--role", "flexible", "--start-role",
                "prefill", "--kv-blocks", "512"], env, tmp)
    # 16 blocks of 16 tokens: two requests of 40 + 64 tokens at a time
    nc.start("d0", [os.path.join(BUILD, "decode_node/baton-decode")] + common
             + ["--node-id", "d0", "--kv-blocks", "16"], env, tmp)
    deadline = time.time() + 30
    while time.time() < deadline and len(roles(target)) < 3:
        time.sleep(0.1)
    nc.tap(nc.wait_ready(rh) and roles(target).get("f1") == "NODE_ROLE_PREFILL",
           "router ready; f1 serves prefill", roles(target))

    prompts = [ids(13 + k, 40) for k in range(4)]
    refs = [nc.run_ref(model, p, N_TOK) for p in prompts]
    nc.tap(all(refs), "baton-run references")

    def steady(secs):
        """One request at a time for `secs`: (done, wrong)."""
        done, wrong = 0, 0
        end = time.time() + secs
        while time.time() < end:
            k = done % len(prompts)
            got = nc.gen(rg, prompts[k], N_TOK)
            done += 1
            wrong += got != refs[k]
        return done, wrong

    # steady load that fits d0: both sides meet their SLOs, nothing moves
    done, wrong = steady(12 * INTERVAL_MS / 1000.0)
    evs = events(target)
    nc.tap(evs == [] and wrong == 0 and done > 0,
           "steady load (%d requests, 12 intervals): no move, answers equal"
           % done, evs)

    # a burst: d0 holds two, the rest wait for decode room
    results = []
    lock = threading.Lock()

    def one(k):
        got = nc.gen(rg, prompts[k % len(prompts)], N_TOK)
        with lock:
            results.append(got == refs[k % len(prompts)])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    deadline = time.time() + 60
    while time.time() < deadline and roles(target).get("f1") != "NODE_ROLE_BOTH":
        time.sleep(0.1)
    nc.tap(roles(target).get("f1") == "NODE_ROLE_BOTH",
           "requests waiting for decode room move f1 to both", roles(target))
    for t in threads:
        t.join(180)
    nc.tap(len(results) == 12 and all(results),
           "all 12 burst requests answered, each equal to baton-run's tokens",
           results)
    evs = events(target) or []
    started = [e for e in evs if e.get("kind") == "move-started"]
    nc.tap(len(started) == 1 and started[0].get("node_id") == "f1" and
           started[0].get("to_role") == "NODE_ROLE_BOTH" and
           re.search(r"more decode: .* [1-9]\d* waiting for decode",
                     started[0].get("reason", "")) is not None,
           "batonctl events: the controller's move and its figures", evs)
    with open(os.path.join(tmp, "router.err")) as f:
        log = f.read()
    nc.tap(re.search(r"role controller: node f1 prefill -> both: more decode: "
                     r"ttft .* waiting for decode", log) is not None,
           "the controller logs why it moves")

    # steady again, past the dwell: no move back and forth
    done, wrong = steady(12 * INTERVAL_MS / 1000.0)
    evs = events(target) or []
    nc.tap(len([e for e in evs if e.get("kind") == "move-started"]) == 1 and
           wrong == 0 and roles(target).get("f1") == "NODE_ROLE_BOTH",
           "steady load after the move (%d requests, 12 intervals): no "
           "further move" % done, [e.get("kind") for e in evs])
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
