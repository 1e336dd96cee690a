#!/usr/bin/python3
"""Every daemon speaks systemd's readiness protocol (TAP): started as a
Type=notify unit would start it, with $NOTIFY_SOCKET naming a datagram
socket this test binds, it sends READY=1 once it serves, and STOPPING=1
when SIGTERM starts its drain, then exits 0 (deploy/systemd relies on it:
the node units start After= a router that has said READY=1).

BATON_BUILD_ROOT = the build folder.
"""
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

BUILD = nc.BUILD


def listener(name):
    """An abstract datagram socket, as systemd's: (socket, NOTIFY_SOCKET)."""
    addr = "baton-sdnotify-%d-%s" % (os.getpid(), name)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + addr)
    return s, "@" + addr


def wait_for(sock, want, secs):
    """The datagrams received until one holds the line `want`, or timeout."""
    got = []
    deadline = time.time() + secs
    while time.time() < deadline:
        sock.settimeout(max(0.1, deadline - time.time()))
        try:
            msg = sock.recv(4096).decode(errors="replace")
        except socket.timeout:
            break
        got.append(msg)
        if want in msg.split("\n"):
            return True, got
    return False, got


def check_daemon(name, args, env, tmp):
    sock, addr = listener(name)
    e = dict(env)
    e["NOTIFY_SOCKET"] = addr
    p, grpc, http = nc.start(name, args, e, tmp)
    ok, got = wait_for(sock, "READY=1", 30)
    status, _ = nc.http_get(http, "/healthz")
    nc.tap(ok and status == 200, "%s sends READY=1 once it serves" % name,
           "datagrams: %r, /healthz %s" % (got, status))
    p.send_signal(signal.SIGTERM)
    ok, got = wait_for(sock, "STOPPING=1", 15)
    try:
        rc = p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        rc = None
    nc.tap(ok and rc == 0, "%s sends STOPPING=1 on SIGTERM, then exits 0" % name,
           "datagrams: %r, exit %s" % (got, rc))
    sock.close()
    return grpc


def main():
    tmp, model, env = nc.setup("baton-sdnotify-")
    # the router stays up for the nodes (checked last)
    rsock, raddr = listener("router")
    renv = dict(env)
    renv["NOTIFY_SOCKET"] = raddr
    r, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms"],
                         renv, tmp)
    ok, got = wait_for(rsock, "READY=1", 30)
    nc.tap(ok and nc.http_get(rh, "/healthz")[0] == 200,
           "baton-router sends READY=1 once it serves (before any node registers)",
           "datagrams: %r" % got)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1",
              "--grpc-port", "0", "--http-port", "0"]
    check_daemon("baton-prefill", [os.path.join(BUILD, "prefill_node/baton-prefill")]
                 + common, env, tmp)
    check_daemon("baton-decode", [os.path.join(BUILD, "decode_node/baton-decode")]
                 + common + ["--kv-blocks", "256"], env, tmp)
    check_daemon("baton-kvstore", [os.path.join(BUILD, "kvstore/baton-kvstore"),
                                   "--grpc-port", "0", "--http-port", "0",
                                   "--dram-bytes", "64M"], env, tmp)
    r.send_signal(signal.SIGTERM)
    ok, got = wait_for(rsock, "STOPPING=1", 15)
    try:
        rc = r.wait(timeout=60)
    except subprocess.TimeoutExpired:
        rc = None
    nc.tap(ok and rc == 0, "baton-router sends STOPPING=1 on SIGTERM, then exits 0",
           "datagrams: %r, exit %s" % (got, rc))
    rsock.close()
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
