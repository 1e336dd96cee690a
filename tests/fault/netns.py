"""Network namespaces for the fault matrix's network faults: one namespace
per node, each with a veth ("eth0") into a bridge that lives in a hub
namespace of its own, and a veth from the root namespace into that bridge,
so the router, the kvstore and the load (which stay in the root namespace)
reach every node, and the nodes reach each other, over a private /24.

The bridge is not in the root namespace: with br_netfilter loaded there,
bridged frames would cross the root's iptables FORWARD chain (policy DROP
on a host running Docker). Names carry the run's pid (bt-PID-...), so
parallel runs never collide; the /24 is one no route of the root
namespace overlaps. Everything is removed by down() (atexit too), and a
run first sweeps what a dead run left (its pid gone, no process inside).

The faults act on packets from the peer at the input hook of each of the
two namespaces: nftables drops them (loss: `numgen random mod 100 < N`;
partition: all), or an iptables NFQUEUE rule hands them to nfq_delay.py,
which holds each for a fixed delay (sch_netem, nftables' `queue` and
tc's other delaying qdiscs are missing from this kernel)."""
import atexit
import ipaddress
import os
import re
import subprocess
import sys

PREFIX = "bt-"
HERE = os.path.dirname(os.path.abspath(__file__))


def sh(*args, ns=None, check=True, inp=None):
    """Runs a command (in namespace ns); raises with its stderr on failure
    when check."""
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    r = subprocess.run(cmd, capture_output=True, text=True, input=inp, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), (r.stderr or r.stdout).strip()))
    return r


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def sweep():
    """Removes the namespaces and root links of runs whose process is gone
    (and, for a namespace, that no process runs in)."""
    r = sh("ip", "netns", "list", check=False)
    for line in r.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"bt-(\d+)-", name)
        if m and not _pid_alive(int(m.group(1))) and \
                not sh("ip", "netns", "pids", name, check=False).stdout.strip():
            sh("ip", "netns", "del", name, check=False)
    r = sh("ip", "-o", "link", "show", check=False)
    for m in re.finditer(r"^\d+: (bt-(\d+)-[^:@\s]+)", r.stdout, re.M):
        if not _pid_alive(int(m.group(2))):
            sh("ip", "link", "del", m.group(1), check=False)


def _free_subnet(seed):
    """A 10.x.y.0/24 that no route of the root namespace overlaps."""
    r = sh("ip", "-o", "-4", "route", "show", "table", "all", check=False)
    taken = []
    for line in r.stdout.splitlines():
        w = line.split()
        dst = w[1] if w and w[0] in ("local", "broadcast", "unicast") and len(w) > 1 \
            else (w[0] if w else "")
        try:
            taken.append(ipaddress.ip_network(dst, strict=False))
        except ValueError:
            pass
    for i in range(55 * 256):
        k = (seed + i) % (55 * 256)
        net = ipaddress.ip_network("10.%d.%d.0/24" % (200 + k // 256, k % 256))
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free 10.200-254.x.0/24 in the root namespace's routes")


def probe():
    """{kind: why it cannot be made here} for net-loss, net-partition and
    net-delay ({} when all can): a namespace, nftables in it, an iptables
    NFQUEUE rule in it. Never raises."""
    ns = "bt-%d-probe" % os.getpid()
    why = {}
    try:
        r = sh("ip", "netns", "add", ns, check=False)
        err = r.stderr.strip() if r.returncode != 0 else None
    except (OSError, subprocess.SubprocessError) as e:
        err = "%s: %s" % (type(e).__name__, e)
    if err is not None:
        msg = "`ip netns add` fails (%s): network namespaces are not permitted here" % err
        return {k: msg for k in ("net-loss", "net-partition", "net-delay")}
    try:
        r = sh("nft", "-f", "-", ns=ns, check=False, inp=(
            "add table inet t\nadd chain inet t c { type filter hook input priority 0; }\n"
            "add rule inet t c ip saddr 10.0.0.1 numgen random mod 100 < 10 drop\n"))
        if r.returncode != 0:
            msg = "nftables in a namespace fails (%s)" % (r.stderr.strip() or "no nft")
            why["net-loss"] = why["net-partition"] = msg
        r = sh("iptables", "-A", "INPUT", "-s", "10.0.0.1", "-j", "NFQUEUE",
               "--queue-num", "0", ns=ns, check=False)
        if r.returncode != 0:
            why["net-delay"] = ("no sch_netem, no nftables `queue`, and an iptables "
                                "NFQUEUE rule fails too (%s)" % r.stderr.strip())
    except (OSError, subprocess.SubprocessError) as e:
        for k in ("net-loss", "net-partition", "net-delay"):
            why.setdefault(k, "%s: %s" % (type(e).__name__, e))
    finally:
        sh("ip", "netns", "del", ns, check=False)
    return why


class Net:
    """The namespaces of one run: addr[name] (a node's address), hub (the
    root namespace's address, where the router and the kvstore listen),
    root_dev (the root namespace's veth, UCX's device there)."""

    def __init__(self, nodes):
        self.run = "bt-%d" % os.getpid()
        self.hub_ns = self.run + "-hub"
        self.root_dev = self.run + "-r"
        self.nodes = list(nodes)
        self.ns = {n: "%s-%s" % (self.run, n) for n in self.nodes}
        self.delayers = {}
        self.made = []
        net = _free_subnet(os.getpid() * 7)
        hosts = list(net.hosts())
        self.prefix = net.prefixlen
        self.hub = str(hosts[0])
        self.addr = {n: str(hosts[10 + i]) for i, n in enumerate(self.nodes)}
        atexit.register(self.down)

    def up(self):
        """Makes the namespaces, the bridge and the links; raises (after
        removing what it made) on failure."""
        try:
            self._up()
        except Exception:
            self.down()
            raise

    def _up(self):
        sweep()
        self._ns(self.hub_ns)
        hub = lambda *a: sh(*a, ns=self.hub_ns)   # noqa: E731
        hub("ip", "link", "add", "br0", "type", "bridge")
        hub("ip", "link", "set", "br0", "up")
        sh("ip", "link", "add", self.root_dev, "type", "veth", "peer", "name", "root",
           "netns", self.hub_ns)
        self.made.append(("link", self.root_dev))
        hub("ip", "link", "set", "root", "master", "br0", "up")
        sh("ip", "addr", "add", "%s/%d" % (self.hub, self.prefix), "dev", self.root_dev)
        sh("ip", "link", "set", self.root_dev, "up")
        for i, n in enumerate(self.nodes):
            ns = self.ns[n]
            self._ns(ns)
            hub("ip", "link", "add", "n%d" % i, "type", "veth", "peer", "name", "eth0",
                "netns", ns)
            hub("ip", "link", "set", "n%d" % i, "master", "br0", "up")
            sh("ip", "addr", "add", "%s/%d" % (self.addr[n], self.prefix), "dev", "eth0",
               ns=ns)
            sh("ip", "link", "set", "eth0", "up", ns=ns)
            sh("ip", "link", "set", "lo", "up", ns=ns)
            # the chain the faults fill: packets that reach this node
            sh("nft", "-f", "-", ns=ns, inp=(
                "add table inet bt\n"
                "add chain inet bt in { type filter hook input priority 0; }\n"))

    def _ns(self, ns):
        sh("ip", "netns", "add", ns)
        self.made.append(("ns", ns))

    def down(self):
        """Removes everything this run made (idempotent)."""
        for k in list(self.delayers):
            self._stop_delayer(k)
        for what, name in reversed(self.made):
            if what == "ns":
                sh("ip", "netns", "del", name, check=False)
            else:
                sh("ip", "link", "del", name, check=False)
        self.made = []

    def wrap(self, name, argv):
        """argv run in node `name`'s namespace (the router and kvstore stay
        in the root one)."""
        if name in self.ns:
            return ["ip", "netns", "exec", self.ns[name]] + argv
        return argv

    def host(self, name):
        return self.addr.get(name, self.hub)

    def device(self, name):
        """The interface UCX's tcp transport uses for `name`."""
        return "eth0" if name in self.ns else self.root_dev

    def drop(self, a, b, percent=100):
        """Drops `percent` % of the packets between nodes a and b (each
        direction, at the receiver)."""
        for x, y in ((a, b), (b, a)):
            rule = "ip saddr %s %sdrop" % (
                self.addr[y], "" if percent >= 100 else
                "numgen random mod 100 < %d " % percent)
            sh("nft", "add", "rule", "inet", "bt", "in", *rule.split(), ns=self.ns[x])

    def delay(self, a, b, ms):
        """Holds every packet between a and b for `ms` at the receiver (a
        round trip gains 2 * ms)."""
        for x, y in ((a, b), (b, a)):
            p = subprocess.Popen(["ip", "netns", "exec", self.ns[x], sys.executable,
                                  os.path.join(HERE, "nfq_delay.py"), "0", str(ms)],
                                 stdout=subprocess.PIPE, text=True)
            self.delayers[x] = (p, y)
            if p.stdout.readline().strip() != "bound":
                raise RuntimeError("nfq_delay.py in %s did not bind its queue" % x)
            sh("iptables", "-I", "INPUT", "-s", self.addr[y], "-j", "NFQUEUE",
               "--queue-num", "0", ns=self.ns[x])

    def _stop_delayer(self, x):
        p, y = self.delayers.pop(x)
        sh("iptables", "-D", "INPUT", "-s", self.addr[y], "-j", "NFQUEUE",
           "--queue-num", "0", ns=self.ns[x], check=False)
        if p.poll() is None:
            p.terminate()      # it accepts what it still holds, then exits
        try:
            return p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            return None

    def heal(self):
        """Ends every fault; [] or what went wrong with the delayers."""
        bad = []
        for x in list(self.delayers):
            p = self.delayers[x][0]
            died = p.poll()
            rc = self._stop_delayer(x)
            if died is not None or rc != 0:
                bad.append("the delayer in %s ended early or badly (rc %s)" % (x, rc))
        for n in self.nodes:
            sh("nft", "flush", "chain", "inet", "bt", "in", ns=self.ns[n], check=False)
        return bad
