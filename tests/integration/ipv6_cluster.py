#!/usr/bin/python3
"""A cluster on the IPv6 loopback: baton-router and a --role both node
listening on ::1, the node registering at ipv6:[::1]:PORT, one completion
over HTTP and one over gRPC. Skips (TAP) where ::1 is not configured.

usage: ipv6_cluster.py   (BATON_BUILD_ROOT = the build folder)
"""
import http.client
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

BUILD = nc.BUILD


def have_v6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def main():
    if not have_v6_loopback():
        print("1..0 # SKIP no IPv6 loopback (::1) on this machine")
        return
    tmp, model, env = nc.setup("baton-ipv6-it-")
    _, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--listen", "::1",
                                    "--grpc-port", "0", "--http-port", "0",
                                    "--heartbeat", "100ms"], env, tmp)
    nc.start("both", [os.path.join(BUILD, "decode_node/baton-decode"),
                      "--role", "both", "--model", model, "--listen", "::1",
                      "--router", "ipv6:[::1]:%d" % rg, "--node-id", "b6",
                      "--threads", "1"], env, tmp)
    ready = False
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("::1", rh, timeout=5)
            c.request("GET", "/readyz")
            ready = c.getresponse().status == 200
        except OSError:
            pass
        if ready:
            break
        subprocess.run(["sleep", "0.1"])
    nc.tap(ready, "router on [::1] ready with a node on [::1]")
    nodes = subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router",
                            "ipv6:[::1]:%d" % rg, "--json", "nodes"],
                           capture_output=True, text=True, timeout=10)
    try:
        addr = json.loads(nodes.stdout)["nodes"][0]["grpc_address"]
    except (ValueError, KeyError, IndexError):
        addr = None
    nc.tap(addr is not None and addr.startswith("ipv6:[::1]:"),
           "the node advertises a well-formed IPv6 target (%s)" % addr)
    body = json.dumps({"model": "tiny", "prompt": "hello there",
                       "max_tokens": 6, "temperature": 0, "ignore_eos": True})
    try:
        c = http.client.HTTPConnection("::1", rh, timeout=20)
        c.request("POST", "/v1/completions", body,
                  {"content-type": "application/json"})
        r = c.getresponse()
        js = json.loads(r.read().decode())
        ok = r.status == 200 and js["usage"]["completion_tokens"] == 6
    except (OSError, ValueError, KeyError):
        ok = False
    nc.tap(ok, "a completion over HTTP on [::1]")
    out = subprocess.run([os.path.join(BUILD, "tests/integration/node_gen_client"),
                          "ipv6:[::1]:%d" % rg, "tiny", "4091,104,262,310", "6"],
                         capture_output=True, text=True, timeout=30)
    nc.tap(out.returncode == 0 and "usage: 4 6" in out.stdout,
           "a Generate over gRPC on [::1]")
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
