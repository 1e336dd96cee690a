#!/usr/bin/python3
"""baton-local up as an operator runs it.

Right after a cluster went down: the fixed HTTP ports of
the last one may still have connections in TIME-WAIT (a daemon that closed
a connection first), which the daemons' own listeners bind over
(SO_REUSEADDR), so the port check before starting must too. A listener
here closes an accepted connection first, leaving the port in TIME-WAIT,
then `baton-local up --node-http-port P` must start and serve, and a port
really in use must still be refused.

--node-arg ARG reaches every node: `--node-arg --kv-blocks=77` shows in
every node's registration, and a node flag that stops the node
(`--node-arg --numerics=fast` on the CPU) fails `up` with the node's own
one-line reason.

usage: deploy_local_up.py shm   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

SRC = os.environ.get("BATON_SOURCE_ROOT",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LOCAL = os.path.join(SRC, "deploy/local/baton-local")


def free_run(n):
    """A first port P with P..P+n-1 all free now."""
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p + n > 65000:
            continue
        try:
            held = []
            for q in range(p, p + n):
                t = socket.socket()
                t.bind(("127.0.0.1", q))
                held.append(t)
            for t in held:
                t.close()
            return p
        except OSError:
            for t in held:
                t.close()
    nc.bail("no run of %d free ports" % n)


def time_wait(port):
    """Leaves 127.0.0.1:port in TIME-WAIT: the listening side closes first."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(1)
    c = socket.create_connection(("127.0.0.1", port))
    a, _ = ls.accept()
    a.close()          # the server's side closes first: its port waits
    c.recv(1)
    c.close()
    ls.close()


def main():
    tmp, model, env = nc.setup("baton-local-ports-")
    run_dir = os.path.join(tmp, "local")
    env = dict(env, BATON_RUN_DIR=run_dir, BUILD=os.path.abspath(nc.BUILD))
    env.pop("UCX_TLS", None)
    port = free_run(4)
    args = [LOCAL, "up", "--no-kvstore", "--no-cluster-token", "--http-port", "0",
            "--grpc-port", "0", "--node-http-port", str(port), "--ucx-tls", nc.MODE]

    # a port in use is still refused, before anything starts
    busy = socket.socket()
    busy.bind(("127.0.0.1", port + 1))
    busy.listen(1)
    up = subprocess.run(args, env=env, capture_output=True, text=True,
                        timeout=nc.scaled(120))
    busy.close()
    nc.tap(up.returncode != 0 and "are not all free" in up.stderr,
           "a node HTTP port in use: baton-local up refuses, naming the range",
           up.returncode, up.stderr[-400:])

    # a node flag that stops the nodes: up fails with the node's reason
    up = subprocess.run(args + ["--node-arg", "--numerics=fast"], env=env,
                        capture_output=True, text=True, timeout=nc.scaled(120))
    nc.tap(up.returncode != 0 and "--numerics fast needs --backend cuda" in up.stderr,
           "--node-arg --numerics=fast: up fails, showing the node's reason",
           up.returncode, up.stderr[-400:])
    subprocess.run([LOCAL, "down"], env=env, capture_output=True, timeout=nc.scaled(60))

    for p in range(port, port + 3):
        time_wait(p)
    ss = subprocess.run(["ss", "-tan", "state", "time-wait"], capture_output=True,
                        text=True).stdout
    up = subprocess.run(args + ["--node-arg", "--kv-blocks=77"], env=env,
                        capture_output=True, text=True, timeout=nc.scaled(180))
    try:
        with open(os.path.join(run_dir, "endpoints.json")) as f:
            ep = json.load(f)
        st, js = nc.http_json(int(ep["http"].rsplit(":", 1)[1]), "/v1/completions",
                              {"model": ep["model"], "prompt": "hello",
                               "max_tokens": 4, "ignore_eos": True})
    except (OSError, ValueError, KeyError) as e:
        st, js = 0, repr(e)
    nc.tap(up.returncode == 0 and st == 200,
           "node HTTP ports %d..%d in TIME-WAIT: baton-local up starts and serves"
           % (port, port + 2), "127.0.0.1:%d" % port in ss, up.stderr[-400:], st, js)
    try:
        r = nc.ctl("ipv4:" + ep["grpc"], "get", "nodes", "-o", "json")
        blocks = sorted(n["total_blocks"] for n in json.loads(r.stdout)["nodes"]
                        if n["role"] != "NODE_ROLE_KVSTORE")
    except (OSError, ValueError, KeyError, NameError) as e:
        blocks = repr(e)
    nc.tap(blocks == [77, 77], "--node-arg --kv-blocks=77 reached both nodes", blocks)
    down = subprocess.run([LOCAL, "down"], env=env, capture_output=True, text=True,
                          timeout=nc.scaled(60))
    nc.tap(down.returncode == 0, "baton-local down", down.stderr[-300:])
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
