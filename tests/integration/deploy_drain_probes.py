#!/usr/bin/python3
"""A drain never fails the probes Kubernetes restarts on (TAP).

The manifests' rule, checked on live nodes: the startup and liveness
probes of the prefill and decode pods (read from deploy/k8s/base) keep
answering 200 while `batonctl drain` drains a node, and only the readiness
probe turns to 503. A liveness probe that a drain failed would make the
kubelet restart the drained pod, which then registers ready again
(issue 18, item 1). ctl_deploy.py checks the same rule on the rendered
manifests.

BATON_BUILD_ROOT = the build folder; BATON_SOURCE_ROOT = the sources.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

try:
    import yaml
except ImportError:
    print("1..0 # SKIP python3-yaml is not installed")
    sys.exit(0)

BUILD = nc.BUILD
SRC = os.environ.get("BATON_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def probes(role):
    """{probe: HTTP path} of the pool's container in deploy/k8s/base."""
    with open(os.path.join(SRC, "deploy", "k8s", "base", role + ".yaml")) as f:
        for d in yaml.safe_load_all(f):
            if d and d.get("kind") == "Deployment":
                c = d["spec"]["template"]["spec"]["containers"][0]
                return {p: c.get(p, {}).get("httpGet", {}).get("path")
                        for p in ("startupProbe", "livenessProbe", "readinessProbe")}
    return {}


def ctl(rg, *args):
    ctl_bin = os.environ.get("BATONCTL", os.path.join(BUILD, "cli/batonctl"))
    return subprocess.run([ctl_bin, "--router", "127.0.0.1:%d" % rg] + list(args),
                          capture_output=True, text=True, timeout=60)


def wait_status(port, path, want, secs=20):
    deadline = time.time() + secs
    status = None
    while time.time() < deadline:
        status = nc.http_get(port, path)[0]
        if status == want:
            return status
        time.sleep(0.1)
    return status


def main():
    tmp, model, env = nc.setup("baton-drain-probes-")
    _, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms"], env, tmp)
    common = ["--model", model, "--router", "ipv4:127.0.0.1:%d" % rg, "--threads", "1",
              "--heartbeat", "100ms"]
    ports = {}
    for role in ("prefill", "decode"):
        extra = ["--node-id", "dp-" + role] + (["--kv-blocks", "256"] if role == "decode" else [])
        _, _, ports[role] = nc.start(role, [os.path.join(BUILD, "%s_node/baton-%s" % (role, role))]
                                     + common + extra, env, tmp)
    nc.tap(nc.wait_ready(rh, 60), "router ready with a prefill and a decode node")
    for role in ("prefill", "decode"):
        pr = probes(role)
        port = ports[role]
        nc.tap(None not in pr.values(), "deploy/k8s/base/%s.yaml: HTTP probes %s" % (role, pr))
        if None in pr.values():
            continue
        before = {p: nc.http_get(port, path)[0] for p, path in pr.items()}
        nc.tap(set(before.values()) == {200},
               "%s before the drain: every probe answers 200" % role, before)
        r = ctl(rg, "drain", "dp-" + role)
        nc.tap(r.returncode == 0, "batonctl drain dp-%s" % role, r.stdout + r.stderr)
        ready = wait_status(port, pr["readinessProbe"], 503)
        nc.tap(ready == 503, "%s drained: readiness (%s) answers 503" %
               (role, pr["readinessProbe"]), "got %s" % ready)
        # a few liveness periods' worth of checks, while drained
        during = set()
        for _ in range(20):
            for p in ("startupProbe", "livenessProbe"):
                during.add((p, pr[p], nc.http_get(port, pr[p])[0]))
            time.sleep(0.05)
        bad = [d for d in during if d[2] != 200]
        nc.tap(not bad, "%s drained: startup and liveness (%s) still answer 200, so the "
               "kubelet does not restart it" % (role, pr["livenessProbe"]), bad)
        r = ctl(rg, "undrain", "dp-" + role)
        ready = wait_status(port, pr["readinessProbe"], 200)
        nc.tap(r.returncode == 0 and ready == 200,
               "%s undrained: readiness answers 200 again" % role, r.stderr, ready)
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
