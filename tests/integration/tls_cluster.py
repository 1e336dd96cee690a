#!/usr/bin/python3
"""A local cluster over mTLS (TAP): certificates are made at test time by
deploy/local/baton-certs (openssl CLI) plus a second, unrelated CA; then
baton-router + baton-prefill + baton-decode and a --role both node, all
with --tls-cert/--tls-key/--tls-ca, on loopback.

Checks: the flags' bad combinations exit 2 with one line; Generate through
gRPC (Debian's python3-grpcio) with a client certificate of the CA works;
no certificate, a certificate of the other CA, plaintext, and a client
that does not trust the cluster's CA are all refused with UNAVAILABLE
while the cluster keeps serving; a plaintext node cannot register;
batonctl over mTLS works and without a certificate fails; SIGTERM drains
and every daemon exits 0.

Environment: BATON_BUILD_ROOT (the build folder), BATON_SOURCE_ROOT.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402
from node_cluster import (bail, cleanup, gauge, start, tap,  # noqa: E402
                          wait_ready)

BUILD = os.environ.get("BATON_BUILD_ROOT", "build")
SRC = os.environ.get("BATON_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CI = os.environ.get("CI") == "true"

def run(args, env=None, timeout=30):
    return subprocess.run(args, capture_output=True, text=True, env=env,
                          timeout=timeout)


def main():
    if shutil.which("openssl") is None:
        print("1..0 # SKIP the openssl command is missing (make deps)")
        return 1 if CI else 0
    import grpc
    sys.path.insert(0, os.path.join(SRC, "scripts"))
    import grpc_generate

    tmp = tempfile.mkdtemp(prefix="baton-tls-it-")
    print("# logs in " + tmp, flush=True)
    certs = os.path.join(tmp, "certs")
    other = os.path.join(tmp, "other")
    for d in (certs, other):
        out = run([os.path.join(SRC, "deploy/local/baton-certs"), d])
        if out.returncode != 0:
            bail("baton-certs failed: " + out.stderr)
    model = os.path.join(tmp, "tiny")
    run([os.path.join(BUILD, "tools/baton-mkmodel"), "builtin", "--out", model],
        timeout=60).check_returncode()
    os.mkdir(os.path.join(tmp, "stubs"))
    common_pb, pb, pb_grpc = grpc_generate.load_stubs(os.path.join(tmp, "stubs"))

    env = dict(os.environ)
    env["UCX_TLS"] = "posix,sysv,cma,self"
    env.setdefault("BATON_LOG_LEVEL", "info")
    for k in list(env):
        if k.startswith("BATON_TLS_") or k == "BATON_INSECURE":
            del env[k]
    router_bin = os.path.join(BUILD, "router/baton-router")
    prefill_bin = os.path.join(BUILD, "prefill_node/baton-prefill")
    decode_bin = os.path.join(BUILD, "decode_node/baton-decode")
    ctl_bin = os.path.join(BUILD, "cli/batonctl")
    kv_bin = os.path.join(BUILD, "kvstore/baton-kvstore")
    c = lambda f: os.path.join(certs, f)
    tls = ["--tls-cert", c("node.pem"), "--tls-key", c("node.key"),
           "--tls-ca", c("ca.pem")]

    # 1. bad combinations: exit 2, one line, before anything starts
    bad = [
        (["--tls-cert", c("node.pem")], r"--tls-cert and --tls-key go together"),
        (["--tls-key", c("node.key")], r"--tls-cert and --tls-key go together"),
        (["--tls-cert", c("node.pem"), "--tls-key", os.path.join(tmp, "nope.key")],
         r"--tls-key .*nope\.key: No such file or directory"),
        (["--tls-cert", c("node.key"), "--tls-key", c("node.key")],
         r"--tls-cert .*node\.key: no PEM certificate in it"),
        (["--tls-cert", c("node.pem"), "--tls-key", c("node.pem")],
         r"--tls-key .*node\.pem: no PEM private key in it"),
        (tls + ["--insecure"], r"--insecure contradicts"),
        (["--tls-ca", c("ca.pem")], r"tls needs --tls-cert and --tls-key"),
        (tls + ["--tls-client-cert", c("client.pem")],
         r"--tls-client-cert and --tls-client-key go together"),
        (["--listen", "0.0.0.0"], r"--listen 0\.0\.0\.0 is not a loopback address.*--insecure"),
    ]
    for args, pat in bad:
        for name, exe in (("router", router_bin), ("prefill", prefill_bin)):
            out = run([exe, "--model", model, "--grpc-port", "0", "--http-port", "0"]
                      + args, env=env)
            lines = out.stderr.strip().splitlines()
            tap(out.returncode == 2 and len(lines) == 1 and re.search(pat, lines[0]),
                "%s %s: exit 2, one line /%s/" % (name, " ".join(a.replace(tmp, "T") for a in args), pat),
                "exit %d: %s" % (out.returncode, out.stderr.strip()))
        out = run([kv_bin, "--grpc-port", "0", "--http-port", "0"] + args, env=env)
        lines = out.stderr.strip().splitlines()
        tap(out.returncode == 2 and len(lines) == 1 and re.search(pat, lines[0]),
            "kvstore %s: exit 2, one line /%s/" % (" ".join(a.replace(tmp, "T") for a in args), pat),
            "exit %d: %s" % (out.returncode, out.stderr.strip()))
    out = run([router_bin, "--model", model, "--grpc-port", "0", "--http-port", "0",
               "--tls-cert", c("node.pem"), "--tls-key", os.path.join(other, "node.key")],
              env=env)
    tap(out.returncode == 1 and "tls key that does not match its certificate" in out.stderr,
        "a key of another certificate: the router exits 1 at listen, saying so",
        "exit %d: %s" % (out.returncode, out.stderr.strip()[-300:]))
    out = run([prefill_bin, "--model", model, "--router", "dns:baton-router:50051"], env=env)
    tap(out.returncode == 2 and "--router dns:baton-router:50051 is not a loopback" in out.stderr,
        "a node with a plaintext non-loopback --router needs --insecure (exit 2)", out.stderr)

    # 2. the cluster over mTLS
    _, rg, rh = start("router", [router_bin, "--model", model, "--grpc-port", "0",
                                 "--http-port", "0", "--heartbeat", "100ms"] + tls,
                      env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    # the kvstore over mTLS: its listener (the nodes' puts and gets) and its
    # registration with the router
    _, kg, kh = start("kvstore", [kv_bin, "--grpc-port", "0", "--http-port", "0",
                                  "--dram-bytes", "16M", "--router", target] + tls,
                      env, tmp)
    node_args = ["--model", model, "--router", target, "--threads", "1",
                 "--kvstore", "ipv4:127.0.0.1:%d" % kg] + tls
    start("prefill", [prefill_bin] + node_args, env, tmp)
    start("decode", [decode_bin] + node_args + ["--kv-blocks", "256"], env, tmp)
    tap(wait_ready(rh), "router ready: a prefill and a decode node registered over mTLS")

    def creds(root, cert=None, key=None):
        rd = lambda p: open(p, "rb").read() if p else None
        return grpc.ssl_channel_credentials(root_certificates=rd(root),
                                            private_key=rd(key),
                                            certificate_chain=rd(cert))

    def generate(ch_creds, plain=False, prompt="hello over tls"):
        """(code name, number of tokens)"""
        req = pb.GenerateRequest(model="tiny", prompt=prompt)
        req.sampling.max_tokens = 8
        req.sampling.ignore_eos = True
        addr = "127.0.0.1:%d" % rg
        ch = grpc.insecure_channel(addr) if plain else grpc.secure_channel(addr, ch_creds)
        n, final = 0, False
        try:
            for msg in pb_grpc.GenerateStub(ch).Generate(req, timeout=20):
                n += len(msg.token_ids)
                final = final or msg.HasField("final")
            return ("OK" if final else "NO_FINAL"), n
        except grpc.RpcError as e:
            return e.code().name, 0
        finally:
            ch.close()

    good = creds(c("ca.pem"), c("client.pem"), c("client.key"))
    code, n = generate(good)
    tap(code == "OK" and n == 8, "Generate with a client certificate of the CA: 8 tokens (%s, %d)" % (code, n))
    o = lambda f: os.path.join(other, f)
    refused = [
        ("no client certificate", creds(c("ca.pem")), False),
        ("a client certificate of another CA", creds(c("ca.pem"), o("client.pem"), o("client.key")), False),
        ("a client that trusts another CA only", creds(o("ca.pem"), c("client.pem"), c("client.key")), False),
        ("plaintext", None, True),
    ]
    for what, cr, plain in refused:
        code, _ = generate(cr, plain)
        tap(code == "UNAVAILABLE", "Generate with %s is refused: UNAVAILABLE (%s)" % (what, code))
    code, n = generate(good)
    tap(code == "OK" and n == 8, "the cluster still serves after the refusals (%s, %d)" % (code, n))
    # a prompt of several blocks: the prefill node publishes them to the
    # kvstore over mTLS
    code, n = generate(good, prompt="the baton passes from prefill to decode " * 8)
    deadline = time.time() + 5
    while time.time() < deadline and not (gauge(kh, "baton_kvstore_put_blocks_total") or 0):
        time.sleep(0.1)
    puts = gauge(kh, "baton_kvstore_put_blocks_total") or 0
    tap(code == "OK" and puts >= 2, "the nodes reach the kvstore over mTLS: %d blocks "
        "put (%s)" % (puts, code))

    # 3. a node without TLS cannot register with the mTLS router
    plain_node, _, _ = start("plain-decode", [decode_bin, "--model", model, "--router", target,
                                              "--threads", "1", "--kv-blocks", "64",
                                              "--node-id", "plain"], env, tmp)
    time.sleep(1.5)
    tap(gauge(rh, 'baton_router_nodes{role="decode"}') == 1.0,
        "a plaintext decode node does not register (still 1 decode node)")
    plain_node.send_signal(signal.SIGTERM)
    try:
        plain_node.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass

    # 4. a --role both node over mTLS joins, and requests still work
    start("both", [decode_bin, "--role", "both", "--node-id", "both1", "--kv-blocks", "256"]
          + node_args, env, tmp)
    deadline = time.time() + 10
    while time.time() < deadline and gauge(rh, 'baton_router_nodes{role="decode"}') != 2.0:
        time.sleep(0.1)
    tap(gauge(rh, 'baton_router_nodes{role="decode"}') == 2.0,
        "a --role both node registers over mTLS")

    # 5. batonctl
    ctl_tls = ["--router", target, "--tls-ca", c("ca.pem"), "--tls-cert", c("client.pem"),
               "--tls-key", c("client.key")]
    out = run([ctl_bin, "nodes"] + ctl_tls, env=env)
    tap(out.returncode == 0 and "both1" in out.stdout and out.stdout.count("\n") >= 4,
        "batonctl nodes over mTLS lists the three nodes", out.stdout, out.stderr)
    out = run([ctl_bin, "--json", "nodes", "--role", "kvstore"] + ctl_tls, env=env)
    tap(out.returncode == 0 and '"NODE_ROLE_KVSTORE"' in out.stdout and
        ("ipv4:127.0.0.1:%d" % kg) in out.stdout,
        "the kvstore registered with the router over mTLS", out.stdout, out.stderr)
    out = run([ctl_bin, "health"] + ctl_tls, env=env)
    tap(out.returncode == 0 and "SERVING" in out.stdout, "batonctl health over mTLS: SERVING",
        out.stdout, out.stderr)
    tenv = dict(env, BATON_TLS_CA=c("ca.pem"), BATON_TLS_CERT=c("client.pem"),
                BATON_TLS_KEY=c("client.key"), BATON_ROUTER=target)
    out = run([ctl_bin, "nodes", "--json"], env=tenv)
    tap(out.returncode == 0 and '"both1"' in out.stdout,
        "batonctl takes the certificates from BATON_TLS_*", out.stdout, out.stderr)
    out = run([ctl_bin, "nodes", "--router", target, "--tls-ca", c("ca.pem"),
               "--timeout", "3s"], env=env)
    tap(out.returncode == 3 and "UNAVAILABLE" in out.stderr,
        "batonctl without a client certificate: exit 3 (not reachable), UNAVAILABLE",
        out.stderr)
    out = run([ctl_bin, "nodes", "--router", target, "--timeout", "3s"], env=env)
    tap(out.returncode == 3 and "UNAVAILABLE" in out.stderr,
        "batonctl in plaintext: exit 3 (not reachable), UNAVAILABLE", out.stderr)
    out = run([ctl_bin, "nodes", "--router", target, "--tls-cert", c("client.pem")], env=env)
    tap(out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and
        "--tls-cert and --tls-key go together" in out.stderr,
        "batonctl --tls-cert without --tls-key: exit 2, one line", out.stderr)

    # 6. SIGTERM: every daemon drains and exits 0 (nodes first)
    live = [p for p in nc.PROCS if p.poll() is None]
    for p in live[1:] + live[:1]:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    codes = [p.poll() for p in live]
    tap(all(x == 0 for x in codes), "SIGTERM: every daemon exits 0 (%s)" % codes)

    cleanup()
    print("1..%d" % nc.N, flush=True)
    if nc.FAILED == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if nc.FAILED else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException as e:   # noqa: BLE001 - report, then clean up
        print("Bail out! %r" % e, flush=True)
        cleanup()
        sys.exit(1)
