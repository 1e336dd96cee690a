#!/usr/bin/python3
"""The soak (issue 17): the fault matrix's cluster and load, run for a
given time with a fault every --fault-every seconds, and a sample of every
daemon every --sample-every seconds: resident memory (VmRSS), open file
descriptors and KV blocks (nodes' used blocks, the kvstore's DRAM
blocks). Each fault is one fault-matrix trial (its load, its outcome and
idle checks, the victim's recovery); fault-free loads run between them.

Only p2 and d2 are ever killed (and restarted); the router, the kvstore,
p1 and d1 are only stopped and continued, so their samples span the whole
soak. At the end the slope of each series (least squares, per hour) over
the samples after the first fifth (warm-up) is printed; the soak fails on
any trial violation, or when a long-lived daemon's RSS grows faster than
--max-rss-mib-per-h or its open fds faster than --max-fds-per-h.

usage: soak.py [--duration 30m] [--seed S] [--samples out.csv]
       (BATON_BUILD_ROOT = the build folder)
"""
import argparse
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fault_matrix as fm   # noqa: E402
nc = fm.nc

LONG_LIVED = ("router", "kvstore", "p1", "d1")
FAULTS = [("kill-prefill", "p2"), ("kill-decode", "d2"), ("stop-prefill", "p1"),
          ("stop-prefill", "p2"), ("stop-decode", "d1"), ("stop-decode", "d2"),
          ("stop-kvstore", "kvstore"), ("stop-router", "router")]
BLOCKS = {"prefill": "baton_node_kv_used_blocks", "decode": "baton_node_kv_used_blocks",
          "kvstore": 'baton_kvstore_blocks{tier="dram"}', "router": None}


def duration(text):
    units = {"s": 1, "m": 60, "h": 3600}
    return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)


def proc_sample(pid):
    """(RSS in MiB, open fds) of a process, None when it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            rss = next(int(x.split()[1]) for x in f if x.startswith("VmRSS:"))
        return rss / 1024.0, len(os.listdir("/proc/%d/fd" % pid))
    except (OSError, StopIteration):
        return None


def sampler(cl, samples, stop, every):
    """Appends (t, name, pid, rss MiB, fds, blocks) for each daemon."""
    t0 = time.time()
    while not stop.wait(every):
        for name, p in list(cl.proc.items()):
            s = proc_sample(p.pid)
            if s is None:
                continue
            g = BLOCKS[fm.fc.ROLE[name]]
            blocks = cl.metrics(name).get(g) if g else None
            samples.append((time.time() - t0, name, p.pid, s[0], s[1], blocks))


def free_load(cl, pb, pool, refs, load_s, rnd):
    """A fault-free load of 6-14 requests from the pool, with the same
    outcome checks, nothing may fail: the violations (empty: none)."""
    runs = [fm.fl.vary(rnd, rnd.choice(pool)) for _ in range(rnd.randrange(6, 15))]
    g = fm.fl.Grpc(pb[0], pb[1], cl.grpc["router"])
    threads, out = fm.fl.run_load(g, cl.http["router"], runs,
                                  [rnd.uniform(0, load_s * 0.3) for _ in runs])
    for t in threads:
        t.join(timeout=fm.fl.HANG_S + 30)
    g.close()
    bad = [fm.fl.judge(o or ("hang", None, ""), r, refs[r["id"]], False) or
           (None if (o or ["hang"])[0] in ("done", "cancelled", "deadline")
            else "failed without a fault: %s" % (o,))
           for r, o in zip(runs, out)]
    return [b for b in bad if b]


def slope_per_hour(points):
    """Least-squares slope of [(t seconds, v)] in units per hour."""
    n = len(points)
    if n < 3:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else 3600 * sum((t - mt) * (v - mv) for t, v in points) / den


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", default=os.environ.get("DURATION", "30m"))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 1)))
    ap.add_argument("--fault-every", type=float, default=30.0)
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--max-rss-mib-per-h", type=float, default=32.0)
    ap.add_argument("--max-fds-per-h", type=float, default=20.0)
    ap.add_argument("--samples", metavar="CSV",
                    help="also write every sample (t, daemon, pid, RSS MiB, fds, "
                    "blocks) to this file, to see a plateau or a steady climb")
    a = ap.parse_args()
    secs = duration(a.duration)
    print("# soak %.0fs, seed %d, a fault every %.0fs" % (secs, a.seed, a.fault_every))
    cl, pb, pool, refs, load_s = fm.bring_up(a.seed, 24, "baton-soak-")
    samples, stop = [], threading.Event()
    th = threading.Thread(target=sampler, args=(cl, samples, stop, a.sample_every),
                          daemon=True)
    th.start()
    rnd = random.Random(a.seed)
    end = time.time() + secs
    next_fault = time.time() + a.fault_every
    n_trials = n_loads = n_bad = 0
    while time.time() < end:
        if time.time() >= next_fault:
            kind, victim = rnd.choice(FAULTS)
            seed = rnd.randrange(1 << 31)
            _, t_fault, pause, counts, violations = fm.trial(
                cl, pb, pool, refs, kind, seed, load_s, (6, 15), victim)
            n_trials += 1
            n_bad += bool(violations)
            nc.tap(not violations, "%s of %s (seed %d) at %.2fs: %s" % (
                kind, victim, seed, t_fault,
                " ".join("%d %s" % (v, k) for k, v in counts.items() if v)), *violations)
            next_fault = time.time() + a.fault_every
            continue
        n_loads += 1
        bad = free_load(cl, pb, pool, refs, load_s, rnd)
        if bad:
            n_bad += 1
            nc.tap(False, "fault-free load %d" % n_loads, *bad)
    stop.set()
    th.join()
    if a.samples:
        with open(a.samples, "w") as f:
            f.write("t_s,daemon,pid,rss_mib,fds,blocks\n")
            for s in samples:
                f.write("%.1f,%s,%d,%.2f,%d,%s\n" % (s[0], s[1], s[2], s[3], s[4],
                                                      "" if s[5] is None else s[5]))
    print("# %d fault trials, %d fault-free loads, %d samples" % (
        n_trials, n_loads, len(samples)))
    print("# %-8s %8s %12s %12s %10s %10s %12s" % (
        "daemon", "samples", "RSS MiB", "MiB/h", "fds", "fds/h", "blocks/h"))
    warm = secs / 5
    for name in ("router", "kvstore") + fm.fc.NODES:
        pid = cl.proc[name].pid
        pts = [s for s in samples if s[1] == name and s[2] == pid and s[0] >= warm]
        if not pts:
            continue
        rss = slope_per_hour([(s[0], s[3]) for s in pts])
        fds = slope_per_hour([(s[0], s[4]) for s in pts])
        blk = slope_per_hour([(s[0], s[5]) for s in pts if s[5] is not None])
        print("# %-8s %8d %12.1f %12.2f %10d %10.2f %12.2f" % (
            name, len(pts), pts[-1][3], rss, pts[-1][4], fds, blk))
        if name in LONG_LIVED:
            nc.tap(rss <= a.max_rss_mib_per_h and fds <= a.max_fds_per_h,
                   "%s: RSS %.2f MiB/h (limit %g), fds %.2f/h (limit %g)" % (
                       name, rss, a.max_rss_mib_per_h, fds, a.max_fds_per_h))
    nc.tap(n_bad == 0, "no violation in %d fault trials and %d fault-free loads"
           % (n_trials, n_loads))
    nc.finish(cl.tmp)


if __name__ == "__main__":
    nc.run(main)
