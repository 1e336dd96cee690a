#!/usr/bin/python3
"""Faults of the serving nodes, driven without a router: node_pd_client
plays the router's part of a request against a decode node and a prefill
node, at the pace each check needs (issue 15, items 11-13 and the
scheduler's fairness):
  - lease renewal: a short lease renewed past its original expiry while
    "the prefill is queued" still completes, bit-identical to baton-run;
    without renewals it expires; RenewLease of a wrong lease id, of the
    wrong request id, or after the end answers NOT_FOUND;
  - the lease fence: a lease expires while a slow prefill node still
    writes into its blocks (BATON_TEST_LAYER_DELAY_MS); a second request
    that needs the whole pool gets the blocks only once the writer is done
    and its tokens are baton-run's bit for bit; the same with the writer
    cancelled (as the router does), which then sends a fence;
  - a late writer: a lease fenced by --lease-fence-timeout while its
    slow prefill still writes; the blocks go to the next request, and
    the writer's later data is refused (over tcp the decode node's admit
    check refuses its messages; over shm the writer, which copies
    straight into the mapped pool, finds in the pool's guard that its
    lease no longer owns the blocks and fails its transfer), so that
    request's tokens are baton-run's bit for bit;
  - an early writer: the decode node's loop held after the Reservation
    went out, so the prefill writes first: the blocks take its writes;
  - --role both: renewal, and an expiry racing its own slow prefill;
  - fairness: with more sequences than --max-batch, the oldest finish
    first and every one gets baton-run's tokens;
  - a stopped kvstore: after the first miss, prefills no longer wait
    --kvstore-timeout for it (the circuit breaker), their publishes wait
    for it and are published once it runs again, and come back to it
    once it is up again.

usage: node_faults.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402  (tap, start, run_ref, gauge, ...)

BUILD = nc.BUILD
PD = os.path.join(BUILD, "tests/integration/node_pd_client")


def node(name, role_bin, model, env, tmp, *extra):
    """A node serving unregistered: (proc, grpc target, http port)."""
    p, g, h = nc.start(name, [os.path.join(BUILD, role_bin), "--model", model,
                              "--threads", "1", "--log-level", "debug"]
                       + list(extra), env, tmp)
    return p, "ipv4:127.0.0.1:%d" % g, h


def pd(dec, pre, ids, n, lease_ms, *args, wait=True):
    """Runs node_pd_client; with wait=False returns the Popen."""
    cmd = [PD, dec, pre, ",".join(map(str, ids)), str(n), str(lease_ms)] + \
        [str(a) for a in args]
    if not wait:
        q = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        nc.PROCS.append(q)
        return q
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=nc.scaled(120))
    return parse(out.stdout, out.returncode)


def parse(text, rc):
    r = {"rc": rc, "text": text}
    for key in ("reserved", "renewed", "decode-end", "prefill-end", "probe",
                "probe-after", "probe-admitted"):
        m = re.search(r"^%s: (.*)$" % key, text, re.M)
        r[key] = m.group(1) if m else None
    m = re.search(r"^tokens:([0-9 ]*)$", text, re.M)
    r["tokens"] = [int(x) for x in m.group(1).split()] if m else None
    return r


def finish_read(q):
    """The rest of a client's stdout, after readline() calls: read through
    the same buffered file (communicate(timeout) reads the raw pipe and
    would lose what readline() already buffered)."""
    try:
        q.wait(timeout=nc.scaled(60))
    except subprocess.TimeoutExpired:
        q.kill()
    return q.stdout.read()


def code(s):
    return int(s.split()[0]) if s else None


def check_renewal(model, env, tmp):
    _, dec, _ = node("d-renew", "decode_node/baton-decode", model, env, tmp,
                     "--kv-blocks", "64")
    _, pre, _ = node("p-renew", "prefill_node/baton-prefill", model, env, tmp)
    ids = [4091] + [(i * 29 + 3) % 4000 for i in range(1, 40)]
    ref = nc.run_ref(model, ids, 24)
    # a 300 ms lease, the prefill "queued" for 1.5 s, renewed every 100 ms
    r = pd(dec, pre, ids, 24, 600, "--wait", 2400, "--renew", 150, "--probe")
    nc.tap(r["rc"] == 0 and code(r["decode-end"]) == 0 and
           code(r["prefill-end"]) == 0 and int(r["renewed"] or 0) >= 5 and
           r["tokens"] == ref,
           "a 600 ms lease renewed for 2.4 s: the request completes, tokens "
           "equal baton-run (renewed %s, decode %s)" % (r["renewed"],
                                                      r["decode-end"]),
           r["text"])
    nc.tap(r["probe"] == "5 5" and r["probe-after"] == "5",
           "RenewLease: wrong lease id, wrong request id, ended lease -> "
           "NOT_FOUND (%s, after %s)" % (r["probe"], r["probe-after"]))
    nc.tap(r["probe-admitted"] == "0 0", "RenewLease once the KV arrived: "
           "OK, expiry 0 (%s)" % r["probe-admitted"])
    r = pd(dec, pre, ids, 24, 600, "--wait", 2400)
    nc.tap(code(r["decode-end"]) == 4 and r["prefill-end"] is None,
           "the same without renewals: DEADLINE_EXCEEDED (%s)"
           % r["decode-end"], r["text"])


def check_fence(model, env, tmp, cancel):
    """A's lease (400 ms) expires while the slow prefill node still writes
    (300 ms per layer); B needs the whole pool, so it can only get A's
    blocks: it must get them only after the writer is done."""
    tag = "cancel" if cancel else "late"
    # 100 prompt tokens + 1000 out = 69 blocks of 16: the pool is one request
    _, dec, dh = node("d-fence-" + tag, "decode_node/baton-decode", model,
                      env, tmp, "--kv-blocks", "69")
    slow_env = dict(env, BATON_TEST_LAYER_DELAY_MS="300")
    _, slow, _ = node("p-slow-" + tag, "prefill_node/baton-prefill", model,
                      slow_env, tmp)
    _, fast, _ = node("p-fast-" + tag, "prefill_node/baton-prefill", model,
                      env, tmp)
    a_ids = [4091] + [(i * 13 + 7) % 4000 for i in range(1, 100)]
    b_ids = [4091] + [(i * 31 + 1) % 4000 for i in range(1, 100)]
    ref = nc.run_ref(model, b_ids, 1000)
    args = ["--cancel-prefill"] if cancel else []
    a = pd(dec, slow, a_ids, 1000, 400, *args, wait=False)
    line = a.stdout.readline()
    seen = line
    while line and not line.startswith("decode-end:"):
        line = a.stdout.readline()
        seen += line
    t0 = time.time()
    # B right away, as a router would with the blocks back in the pool
    b = pd(dec, fast, b_ids, 1000, 5000, "--retry-s", nc.scaled(30))
    waited = time.time() - t0   # B's whole run
    rest = finish_read(a)
    ra = parse(seen + rest, a.returncode)
    # not cancelled, it completes, or over tcp fails UNAVAILABLE (14) once
    # the decode node refuses the data of the lease that ended
    started = code(ra["prefill-end"]) in ((1,) if cancel else (0, 14))
    nc.tap(code(ra["decode-end"]) == 4 and started,
           "%s: the expired lease ends DEADLINE_EXCEEDED while its prefill "
           "runs (%s; prefill %s)" % (tag, ra["decode-end"], ra["prefill-end"]),
           ra["text"])
    nc.tap(b["rc"] == 0 and b["tokens"] == ref,
           "%s: the next request on the expired lease's blocks equals "
           "baton-run bit for bit (%d tokens, done %.2fs after A ended)"
           % (tag, len(b["tokens"] or []), waited),
           "first difference at %s" % next(
               (i for i, (x, y) in enumerate(zip(b["tokens"] or [], ref or []))
                if x != y), None), b["text"][-300:])
    # the hold ended on the writer's message (so a writer had the lease)
    with open(os.path.join(tmp, "d-fence-%s.err" % tag)) as f:
        by_writer = "the writer of lease" in f.read()
    nc.tap(nc.gauge(dh, "baton_node_lease_fence_timeouts_total") == 0 and
           by_writer, "%s: the blocks came back on the writer's %s, not the "
           "bound" % (tag, "fence" if cancel else "kv-complete"))
    deadline = time.time() + nc.scaled(10)
    while time.time() < deadline and nc.gauge(dh, "baton_node_kv_used_blocks"):
        time.sleep(0.1)
    nc.tap(nc.gauge(dh, "baton_node_kv_used_blocks") == 0 and
           nc.gauge(dh, "baton_node_kv_reserved_blocks") == 0,
           "%s: the pool is whole again" % tag)


def check_early_writer(model, env, tmp):
    """The decode node's loop is held 300 ms after each Reservation goes
    out (BATON_TEST_RESERVE_DELAY_MS), so the prefill node writes before
    that loop runs again: the blocks must take its writes already (over
    shm the writer checks the pool's guard itself; it refused them when
    the lease was opened after the send)."""
    slow_env = dict(env, BATON_TEST_RESERVE_DELAY_MS="300")
    _, dec, _ = node("d-early", "decode_node/baton-decode", model, slow_env,
                     tmp, "--kv-blocks", "64")
    _, pre, _ = node("p-early", "prefill_node/baton-prefill", model, env, tmp)
    ids = [4091] + [(i * 17 + 5) % 4000 for i in range(1, 40)]
    ref = nc.run_ref(model, ids, 24)
    r = pd(dec, pre, ids, 24, 5000)
    nc.tap(r["rc"] == 0 and code(r["prefill-end"]) == 0 and
           r["tokens"] == ref,
           "early writer: a prefill that writes before the decode node's loop "
           "ran again completes, tokens equal baton-run (prefill %s)"
           % r["prefill-end"], r["text"][-400:])


def check_late_writer(model, env, tmp):
    """A's lease (400 ms) expires while the slow prefill node writes (300
    ms per layer) and is never told; its blocks come back 100 ms later by
    the bound, while it still writes. B takes them and decodes long
    enough for A's later layers to arrive: each must be refused."""
    _, dec, dh = node("d-late", "decode_node/baton-decode", model, env, tmp,
                      "--kv-blocks", "69", "--lease-fence-timeout", "100ms")
    slow_env = dict(env, BATON_TEST_LAYER_DELAY_MS="300")
    _, slow, _ = node("p-slow-late", "prefill_node/baton-prefill", model,
                      slow_env, tmp)
    _, fast, _ = node("p-fast-late", "prefill_node/baton-prefill", model,
                      env, tmp)
    a_ids = [4091] + [(i * 13 + 7) % 4000 for i in range(1, 100)]
    b_ids = [4091] + [(i * 31 + 1) % 4000 for i in range(1, 100)]
    ref = nc.run_ref(model, b_ids, 1000)
    a = pd(dec, slow, a_ids, 1000, 400, wait=False)
    seen = ""   # A holds the pool before B asks
    for line in iter(a.stdout.readline, ""):
        seen += line
        if line.startswith(("reserved:", "decode-end:")):
            break
    b = pd(dec, fast, b_ids, 1000, 5000, "--retry-s", nc.scaled(30))
    ra = parse(seen + finish_read(a), a.returncode)
    nc.tap(code(ra["decode-end"]) == 4,
           "late writer: A's lease ends DEADLINE_EXCEEDED while its prefill "
           "runs (%s)" % ra["decode-end"], ra["text"])
    timeouts = nc.gauge(dh, "baton_node_lease_fence_timeouts_total")
    if nc.MODE == "tcp":
        refused = nc.gauge(dh, "baton_node_kv_writes_refused_total") or 0
        nc.tap(timeouts == 1 and refused > 0, "late writer: A's blocks came "
               "back by the bound and its later data was refused (%d slices)"
               % refused)
    else:
        # refused by the guard on the writer's side: its transfer fails
        nc.tap(timeouts == 1 and code(ra["prefill-end"]) == 14,
               "late writer: A's blocks came back by the bound and its later "
               "copies were refused (prefill %s)" % ra["prefill-end"])
    nc.tap(b["rc"] == 0 and b["tokens"] == ref,
           "late writer: the request on the fenced lease's blocks equals "
           "baton-run bit for bit (%d tokens)" % len(b["tokens"] or []),
           "first difference at %s" % next(
               (i for i, (x, y) in enumerate(zip(b["tokens"] or [], ref or []))
                if x != y), None), b["text"][-300:])


def check_both(model, env, tmp):
    """--role both: RenewLease there too; a lease that expires while the
    node's own slow prefill still copies into it: the copies stop, the
    prefill fails, its blocks come back on its (direct) fence and the next
    request on them equals baton-run."""
    slow_env = dict(env, BATON_TEST_LAYER_DELAY_MS="300")
    # 69 blocks per request, + its own prefill sequence's 7, + room
    _, both, bh = node("both", "prefill_node/baton-prefill", model, slow_env,
                       tmp, "--role", "both", "--kv-blocks", "80")
    ids = [4091] + [(i * 29 + 3) % 4000 for i in range(1, 40)]
    ref = nc.run_ref(model, ids, 24)
    r = pd(both, both, ids, 24, 600, "--wait", 2400, "--renew", 150)
    nc.tap(r["rc"] == 0 and int(r["renewed"] or 0) >= 5 and r["tokens"] == ref,
           "--role both: a 600 ms lease renewed for 2.4 s completes, tokens "
           "equal baton-run (renewed %s)" % r["renewed"], r["text"])
    a_ids = [4091] + [(i * 13 + 7) % 4000 for i in range(1, 100)]
    b_ids = [4091] + [(i * 31 + 1) % 4000 for i in range(1, 100)]
    ref = nc.run_ref(model, b_ids, 1000)
    a = pd(both, both, a_ids, 1000, 400, wait=False)
    line = a.stdout.readline()
    seen = line
    while line and not line.startswith("decode-end:"):
        line = a.stdout.readline()
        seen += line
    b = pd(both, both, b_ids, 1000, 5000, "--retry-s", nc.scaled(30))
    rest = finish_read(a)
    ra = parse(seen + rest, a.returncode)
    nc.tap(code(ra["decode-end"]) == 4 and code(ra["prefill-end"]) == 10 and
           b["rc"] == 0 and b["tokens"] == ref and
           nc.gauge(bh, "baton_node_lease_fence_timeouts_total") == 0,
           "--role both: the expired lease's prefill stops (%s), the next "
           "request on its blocks equals baton-run" % ra["prefill-end"],
           ra["text"], b["text"][-300:])


def check_fairness(model, env, tmp):
    """4 sequences of equal length on --max-batch 2, started in order: the
    first two finish before the last two (none starves)."""
    _, dec, _ = node("d-fair", "decode_node/baton-decode", model, env, tmp,
                     "--kv-blocks", "1024", "--max-batch", "2")
    _, pre, _ = node("p-fair", "prefill_node/baton-prefill", model, env, tmp)
    prompts = [[4091] + [(i * (k + 3) + k) % 4000 for i in range(1, 12)]
               for k in range(4)]
    procs = []
    for ids in prompts:
        procs.append(pd(dec, pre, ids, 1500, 5000, wait=False))
        # the next one once this one streams: arrival order is known
        line = procs[-1].stdout.readline()
        while line and not line.startswith("reserved:"):
            line = procs[-1].stdout.readline()
        time.sleep(0.1)
    done = {}
    outs = {}
    deadline = time.time() + nc.scaled(300)
    while len(done) < 4 and time.time() < deadline:
        for k, q in enumerate(procs):
            if k not in done and q.poll() is not None:
                done[k] = time.time()
                outs[k] = parse(q.stdout.read(), q.returncode)
        time.sleep(0.01)
    order = sorted(done, key=done.get)
    nc.tap(len(order) == 4 and set(order[:2]) == {0, 1},
           "--max-batch 2, 4 equal sequences: the oldest two finish first "
           "(order %s)" % order)
    same = sum(1 for k in outs
               if outs[k]["rc"] == 0 and outs[k]["tokens"] ==
               nc.run_ref(model, prompts[k], 1500))
    nc.tap(same == 4, "each of them equals baton-run (%d of 4)" % same)


def check_kvstore_down(model, env, tmp):
    """A prefill node with --kvstore and a store that is stopped (SIGSTOP:
    its socket still accepts, nothing answers): the first prefill that
    meets it waits --kvstore-timeout, the next ones skip it at once
    (counted); once it runs again (SIGCONT) a probe finds it and the node
    reads from it again."""
    kv_bin = os.path.join(BUILD, "kvstore/baton-kvstore")
    if not os.path.exists(kv_bin):
        nc.tap(True, "# SKIP no baton-kvstore")
        return
    disk = os.path.join(tmp, "kv-disk")
    os.makedirs(disk, exist_ok=True)
    kv, kg, kh = nc.start("kvstore", [kv_bin, "--grpc-port", "0", "--http-port",
                                      "0", "--disk-dir", disk, "--dram-bytes",
                                      "16M"], env, tmp)
    kv_target = "ipv4:127.0.0.1:%d" % kg
    _, dec, _ = node("d-kv", "decode_node/baton-decode", model, env, tmp,
                     "--kv-blocks", "256")
    # 4 s: far above a prefill's own time on a loaded machine
    _, pre, ph = node("p-kv", "prefill_node/baton-prefill", model, env, tmp,
                      "--kvstore", kv_target, "--kvstore-timeout", "4s")
    _, pre2, ph2 = node("p-kv2", "prefill_node/baton-prefill", model, env, tmp,
                        "--kvstore", kv_target, "--kvstore-timeout", "2s")

    def prompt(k):
        return [4091] + [(i * (k + 5) + 3 * k) % 4000 for i in range(1, 70)]

    # the store works: p-kv publishes, p-kv2 reads it
    t_up = time.time()
    r = pd(dec, pre, prompt(0), 4, 5000)
    t_up = time.time() - t_up   # a prefill's time with the store answering
    deadline = time.time() + nc.scaled(10)
    while time.time() < deadline and not nc.gauge(
            ph, "baton_node_kvstore_published_blocks_total"):
        time.sleep(0.1)
    r2 = pd(dec, pre2, prompt(0), 4, 5000)
    hits = nc.gauge(ph2, "baton_node_kvstore_hit_blocks_total") or 0
    nc.tap(r["rc"] == 0 and r2["rc"] == 0 and r2["tokens"] == r["tokens"]
           and hits > 0, "kvstore up: a prompt published by one prefill node "
           "is read by the other (%s blocks)" % hits)
    os.kill(kv.pid, signal.SIGSTOP)
    try:
        times = []
        for k in range(1, 7):
            t0 = time.time()
            r = pd(dec, pre, prompt(k), 4, 10000)
            times.append(time.time() - t0 if r["rc"] == 0 else 99)
        skipped = nc.gauge(ph, "baton_node_kvstore_skipped_total")
        held = nc.gauge(ph, "baton_node_kvstore_publish_backlog_blocks")
        pub_stopped = nc.gauge(ph, "baton_node_kvstore_published_blocks_total")
    finally:
        os.kill(kv.pid, signal.SIGCONT)
    # the next ones must not pay p-kv's 4 s --kvstore-timeout
    fast = nc.no_wait_bound(3, t_up, 4)
    nc.tap(times[0] < nc.scaled(10) and all(t < fast for t in times[1:]),
           "kvstore stopped: one prefill waits --kvstore-timeout, the next "
           "ones do not (%s s; bound %.2f s, %.2f s with the store up)"
           % (", ".join("%.2f" % t for t in times), fast, t_up))
    nc.tap(skipped is not None and skipped >= 4 and held is not None and
           held >= 4 * 4, "the skips are counted and the publishes wait for "
           "the store (skipped %s, %s blocks waiting)" % (skipped, held))
    # running again: a probe finds it; p-kv reads what p-kv2 published
    hits0 = nc.gauge(ph, "baton_node_kvstore_hit_blocks_total") or 0
    deadline = time.time() + nc.scaled(60)
    back = False
    k = 100
    while time.time() < deadline and not back:
        k += 1
        pd(dec, pre2, prompt(k), 4, 10000)
        time.sleep(0.3)   # the publish is after the reply
        r = pd(dec, pre, prompt(k), 4, 10000)
        back = (nc.gauge(ph, "baton_node_kvstore_hit_blocks_total") or 0) > hits0
    nc.tap(back and r["rc"] == 0, "kvstore running again: the node that "
           "skipped it reads from it again (%d tries)" % (k - 100))
    # what waited while it was stopped went to it once a probe found it
    drained = wait_for_zero(ph, "baton_node_kvstore_publish_backlog_blocks", 30)
    pub = (nc.gauge(ph, "baton_node_kvstore_published_blocks_total") or 0) - \
        (pub_stopped or 0)
    nc.tap(drained and pub >= held,
           "the %s blocks that waited are published once it runs again "
           "(%s published since)" % (held, pub))


def wait_for_zero(port, name, secs):
    deadline = time.time() + nc.scaled(secs)
    while time.time() < deadline:
        if nc.gauge(port, name) == 0:
            return True
        time.sleep(0.1)
    return nc.gauge(port, name) == 0


def main():
    tmp, model, env = nc.setup("baton-node-faults-")
    check_renewal(model, env, tmp)
    check_fence(model, env, tmp, cancel=False)
    check_fence(model, env, tmp, cancel=True)
    check_early_writer(model, env, tmp)
    check_late_writer(model, env, tmp)
    check_both(model, env, tmp)
    check_fairness(model, env, tmp)
    check_kvstore_down(model, env, tmp)
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
