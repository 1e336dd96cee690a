#!/usr/bin/python3
"""Leaks of the soak's long-lived daemons (issue 17): the fault matrix's
cluster from a build with -Db_sanitize=address,undefined (BATON_BUILD_ROOT
names it) runs --loads fault-free loads, then every daemon gets SIGTERM
(drain, graceful exit) and LeakSanitizer checks it as it exits. Fails on a
daemon that does not exit 0 within the bound, or whose log holds a
sanitizer report; prints each report's summary line.

usage: leak_check.py [--loads 40] [--seed S]   (`make leaks` sets the
ASAN_/UBSAN_/LSAN_OPTIONS; run by hand, set them as the Makefile does)
"""
import argparse
import os
import random
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fault_matrix as fm   # noqa: E402
import soak                 # noqa: E402
nc = fm.nc

REPORTS = ("ERROR: LeakSanitizer", "ERROR: AddressSanitizer", "runtime error:")
# nodes first: each leaves the router's pool; the router last
STOP_ORDER = fm.fc.NODES + ("kvstore", "router")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loads", type=int, default=40)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", 1)))
    a = ap.parse_args()
    if "detect_leaks=1" not in os.environ.get("ASAN_OPTIONS", ""):
        nc.bail("ASAN_OPTIONS has no detect_leaks=1 (run it with `make leaks`)")
    cl, pb, pool, refs, load_s = fm.bring_up(a.seed, 24, "baton-leaks-")
    rnd = random.Random(a.seed)
    bad = []
    for _ in range(a.loads):
        bad += soak.free_load(cl, pb, pool, refs, load_s, rnd)
    nc.tap(not bad, "%d fault-free loads: every request done, cancelled or past "
           "its deadline, outputs equal to the reference" % a.loads, *bad[:10])
    for name in STOP_ORDER:
        p = cl.proc[name]
        p.send_signal(signal.SIGTERM)
        try:
            rc = p.wait(timeout=120)
        except subprocess.TimeoutExpired:
            rc = None
        with open(os.path.join(cl.tmp, name + ".err"), errors="replace") as f:
            log = f.read()
        found = [ln for ln in log.splitlines()
                 if any(r in ln for r in REPORTS) or ln.startswith("SUMMARY:")]
        nc.tap(rc == 0 and not found, "%s: SIGTERM, exit %s, no sanitizer report"
               % (name, rc), *found[:20])
    nc.finish(cl.tmp)


if __name__ == "__main__":
    nc.run(main)
