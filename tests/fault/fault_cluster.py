"""The fault matrix's cluster: baton-router, baton-kvstore, 2 baton-prefill
and 2 baton-decode on loopback, each a named process that can be killed,
stopped, continued and restarted on the same ports (so the others find it
again), and the reads the checks need: every daemon's /metrics, the
router's node list. With a netns.Net (the network faults) each node runs
in its own network namespace and every daemon listens on, advertises and
sends UCX's tcp over its private address instead of loopback."""
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "integration"))
import node_cluster as nc  # noqa: E402  (setup, cleanup, http_get, PROCS)

BUILD = nc.BUILD
NODES = ("p1", "p2", "d1", "d2")
ROLE = {"router": "router", "kvstore": "kvstore", "p1": "prefill",
        "p2": "prefill", "d1": "decode", "d2": "decode"}


_port_rng = random.Random()   # its own: the trials' seeded draws stay as they were


def _fixed_port(taken):
    """A free loopback port below the kernel's ephemeral range. A victim
    restarts on its old ports; a port from the ephemeral range (port 0)
    may meanwhile be taken by any process's outgoing connection or
    listener on this machine (seen: `http: cannot listen ... Address
    already in use`, the victim never came back). Below the range only
    another run picking ports this way can collide."""
    lo = 20000
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            hi = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        hi = 32768
    for _ in range(200):
        port = _port_rng.randrange(lo, max(lo + 1000, hi))
        if port in taken:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    return 0


class Cluster:
    def __init__(self, tmp, model, env, net=None):
        self.tmp, self.model, self.env, self.net = tmp, model, env, net
        self.proc, self.grpc, self.http = {}, {}, {}
        self.disk = os.path.join(tmp, "kvdisk")

    def host(self, name):
        """The address daemon `name` listens on."""
        return self.net.host(name) if self.net else "127.0.0.1"

    def target(self, name):
        return "ipv4:%s:%d" % (self.host(name), self.grpc[name])

    def _args(self, name):
        b = lambda *p: os.path.join(BUILD, *p)   # noqa: E731
        gp, hp = str(self.grpc.get(name, 0)), str(self.http.get(name, 0))
        if name == "router":
            # heartbeats often and a timeout shorter than the longest stop:
            # a stopped node may leave the pool (and come back) in a trial;
            # not shorter: a loaded machine delays heartbeats by a second
            return [b("router/baton-router"), "--model", self.model,
                    "--grpc-port", gp, "--http-port", hp, "--heartbeat", "100ms",
                    "--heartbeat-timeout", "3s"] + self._listen(name)
        router = self.target("router")
        if name == "kvstore":
            # short pin and reservation lifetimes: what a killed node held
            # goes back within a trial
            return [b("kvstore/baton-kvstore"), "--grpc-port", gp, "--http-port", hp,
                    "--disk-dir", self.disk, "--dram-bytes", "16M", "--router", router,
                    "--pin-ms", "3s", "--reserve-ms", "3s", "--node-id", "kv1"] + \
                self._listen(name)
        exe = b("prefill_node/baton-prefill") if ROLE[name] == "prefill" \
            else b("decode_node/baton-decode")
        return [exe, "--model", self.model, "--router", router, "--threads", "1",
                "--node-id", name, "--grpc-port", gp, "--http-port", hp,
                "--kvstore", self.target("kvstore"),
                "--kv-blocks", "256", "--lease-fence-timeout", "2s",
                "--kvstore-timeout", "1s", "--max-prefill-tokens", "32"] + \
            self._listen(name)

    def _listen(self, name):
        # a private address is not loopback: plaintext there needs --insecure
        return ["--listen", self.host(name), "--insecure"] if self.net else []

    def start(self, name):
        """Starts (or restarts, on the same ports) one daemon; False when it
        printed no port line within the bound."""
        taken = set(self.grpc.values()) | set(self.http.values())
        for ports in (self.grpc, self.http):
            if name not in ports:
                ports[name] = _fixed_port(taken)
                taken.add(ports[name])
        err = open(os.path.join(self.tmp, name + ".err"), "a")
        argv, env = self._args(name), self.env
        if self.net:
            # UCX's tcp over this daemon's own interface, not lo
            argv = self.net.wrap(name, argv)
            env = dict(env, UCX_TLS="tcp,self", UCX_NET_DEVICES=self.net.device(name))
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err,
                             env=env, text=True)
        err.close()
        nc.PROCS.append(p)
        self.proc[name] = p
        deadline = time.time() + 60
        line = ""
        while time.time() < deadline:
            line = p.stdout.readline()
            if line.startswith("grpc_port=") or p.poll() is not None:
                break
        m = re.match(r"grpc_port=(\d+) http_port=(\d+)", line)
        if not m:
            return False
        self.grpc[name], self.http[name] = int(m.group(1)), int(m.group(2))
        return True

    def start_all(self):
        for name in ("router", "kvstore") + NODES:
            if not self.start(name):
                return name
        return None

    def alive(self, name):
        return self.proc[name].poll() is None

    def signal(self, name, sig):
        self.proc[name].send_signal(sig)

    def metrics(self, name):
        """{series: value} of a daemon's /metrics ({} when it does not answer)."""
        st, body = self.http_get(name, "/metrics")
        out = {}
        if st != 200:
            return out
        for line in body.splitlines():
            if line and not line.startswith("#"):
                k, _, v = line.rpartition(" ")
                try:
                    out[k] = float(v)
                except ValueError:
                    pass
        return out

    def http_get(self, name, path):
        """(status, body) of a GET to daemon `name`'s HTTP port; (0, "")
        when it does not answer."""
        try:
            c = http.client.HTTPConnection(self.host(name), self.http[name], timeout=5)
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        except OSError:
            return 0, ""

    def ctl(self, *args):
        return subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router",
                               self.target("router")] +
                              (["--insecure"] if self.net else []) + list(args),
                              capture_output=True, text=True, timeout=30)

    def registered(self):
        """{node id: state} of the router's node list (kvstore included)."""
        r = self.ctl("--json", "nodes")
        try:
            nodes = json.loads(r.stdout).get("nodes", [])
        except ValueError:
            return {}
        return {n.get("node_id"): n.get("state", "") for n in nodes}

    def ready(self, secs=60):
        """The router answers /readyz 200 and lists the four nodes and the
        kvstore as serving."""
        deadline = time.time() + secs
        while time.time() < deadline:
            if self.http_get("router", "/readyz")[0] == 200:
                reg = self.registered()
                if all(_serving(reg.get(n)) for n in NODES + ("kv1",)):
                    return True
            time.sleep(0.2)
        return False


def _serving(state):
    return state is not None and "LOST" not in state.upper() and \
        "DRAIN" not in state.upper()
