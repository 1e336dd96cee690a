#!/usr/bin/python3
"""The daemons' system calls stay inside systemd's @system-service (TAP).

deploy/systemd's units set SystemCallFilter=@system-service: a call outside
it fails with EPERM there. Each daemon of a local cluster (router, prefill,
decode, kvstore) runs under `strace -f -c` from its start, serves
completions (the KV transfer over UCX, shm transports, or tcp with the
argument "tcp"), a drain and undrain, a cache flush including the kvstore,
and a SIGTERM; every call it made must be in the group, as
`systemd-analyze syscall-filter` expands it on this machine.

usage: deploy_syscalls.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

BUILD = nc.BUILD


def allowed_calls():
    """Every system call name @system-service holds, nested groups expanded."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                         text=True, timeout=60).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            cur = line.split()[0]
            groups[cur] = []
        elif cur and line.strip() and not line.strip().startswith("#"):
            groups[cur].append(line.strip())

    def expand(g, seen):
        names = set()
        for x in groups.get(g, []):
            if x.startswith("@"):
                if x not in seen:
                    names |= expand(x, seen | {x})
            else:
                names.add(x)
        return names
    return expand("@system-service", {"@system-service"})


def traced(name, args, tmp):
    out = os.path.join(tmp, name + ".strace")
    return ["strace", "-f", "-qq", "-c", "-U", "name", "-o", out] + args, out


def child_of(pid):
    """The traced daemon: strace's child."""
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, t)) as f:
                kids = f.read().split()
        except OSError:
            continue
        if kids:
            return int(kids[0])
    return None


def calls_in(path):
    names = []
    with open(path) as f:
        for line in f:
            w = line.strip()
            if w and not w.startswith("-") and w not in ("syscall", "total"):
                names.append(w)
    return names


def complete(port, prompt):
    body = json.dumps({"model": "tiny", "prompt": prompt, "max_tokens": 8,
                       "temperature": 0, "ignore_eos": True})
    r = subprocess.run(["curl", "-s", "-m", "60", "-o", "/dev/null", "-w", "%{http_code}",
                        "http://127.0.0.1:%d/v1/completions" % port,
                        "-H", "content-type: application/json", "-d", body],
                       capture_output=True, text=True, timeout=90)
    return r.stdout


def main():
    for tool in ("strace", "systemd-analyze"):
        if shutil.which(tool) is None:
            if os.environ.get("CI") == "true":
                nc.bail("%s is missing (scripts/deps.sh installs it)" % tool)
            print("1..0 # SKIP %s is not installed" % tool)
            return
    allowed = allowed_calls()
    nc.tap(len(allowed) > 100, "systemd-analyze expands @system-service (%d calls)"
           % len(allowed))
    tmp, model, env = nc.setup("baton-syscalls-")
    outs, procs = {}, {}
    args, outs["kvstore"] = traced("kvstore", [
        os.path.join(BUILD, "kvstore/baton-kvstore"), "--grpc-port", "0",
        "--http-port", "0", "--dram-bytes", "64M",
        "--disk-dir", os.path.join(tmp, "kv"), "--disk-bytes", "256M"], tmp)
    procs["kvstore"], kg, _ = nc.start("kvstore", args, env, tmp)
    args, outs["router"] = traced("router", [
        os.path.join(BUILD, "router/baton-router"), "--model", model,
        "--grpc-port", "0", "--http-port", "0", "--heartbeat", "100ms"], tmp)
    procs["router"], rg, rh = nc.start("router", args, env, tmp)
    common = ["--model", model, "--router", "ipv4:127.0.0.1:%d" % rg, "--threads", "1",
              "--kvstore", "ipv4:127.0.0.1:%d" % kg]
    for role in ("prefill", "decode"):
        extra = ["--node-id", "sc-" + role] + (["--kv-blocks", "256"] if role == "decode" else [])
        args, outs[role] = traced(role, [os.path.join(BUILD, "%s_node/baton-%s" % (role, role))]
                                  + common + extra, tmp)
        procs[role], _, _ = nc.start(role, args, env, tmp)
    nc.tap(nc.wait_ready(rh, 60), "the traced cluster is ready")
    codes = [complete(rh, "system calls, request %d, a prompt long enough" % i)
             for i in range(3)]
    nc.tap(codes == ["200"] * 3, "completions over the traced cluster", codes)
    ctl = os.environ.get("BATONCTL", os.path.join(BUILD, "cli/batonctl"))
    for cmd in (["drain", "sc-decode"], ["undrain", "sc-decode"],
                ["flush-cache", "--kvstore"]):
        subprocess.run([ctl, "--router", "127.0.0.1:%d" % rg] + cmd,
                       capture_output=True, timeout=60)
    codes = [complete(rh, "after the flush %d" % i) for i in range(2)]
    # stop in the order baton-local does: nodes, kvstore, router
    for name in ("prefill", "decode", "kvstore", "router"):
        kid = child_of(procs[name].pid)
        if kid:
            os.kill(kid, signal.SIGTERM)
        try:
            procs[name].wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
    for name in ("router", "prefill", "decode", "kvstore"):
        names = calls_in(outs[name]) if os.path.exists(outs[name]) else []
        outside = sorted(set(names) - allowed)
        nc.tap(names and not outside,
               "baton-%s: its %d system calls are all in @system-service" % (name, len(names)),
               "outside: %s" % outside if names else "no strace summary")
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
