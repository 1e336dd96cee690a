#!/usr/bin/python3
"""The authenticated control plane on real processes (TAP); docs/security.md.

1. Cluster tokens (deploy/local/baton-tokens): router, kvstore, prefill
   and decode each with its own token file register and serve; a fake node
   (python3-grpcio) without a token, with an unknown token, with the
   router's token, or with the prefill token registering as decode is
   refused with UNAUTHENTICATED / PERMISSION_DENIED and a precise message;
   a real baton-decode given the prefill token never joins; the nodes'
   Prefill/Decode services and the kvstore refuse calls without the
   router's (or a node's) credential; the refusals are counted in
   baton_rpc_auth_refused_total; no token appears in any log or command
   line; bad token files stop a daemon with exit 2 and one line.
2. mTLS roles: with certificates of baton-certs (baton://role/ROLE URIs) a
   certificate without a role cannot register, the prefill certificate
   cannot register as decode, nodes with their role's certificate serve.
3. HTTPS: the router's HTTP API with --http-tls-cert answers curl
   --cacert, the official `openai` npm client (when installed by the
   interop test), and answers plain HTTP on that port with a 400.

Environment: BATON_BUILD_ROOT (the build folder), BATON_SOURCE_ROOT.
"""
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402
from node_cluster import bail, gauge, start, tap, wait_ready  # noqa: E402

BUILD = os.environ.get("BATON_BUILD_ROOT", "build")
SRC = os.environ.get("BATON_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CI = os.environ.get("CI") == "true"
MD_KEY = "x-baton-cluster-token"
ROLE = {"prefill": 1, "decode": 2, "both": 3, "kvstore": 4}


def run(args, env=None, timeout=30):
    return subprocess.run(args, capture_output=True, text=True, env=env,
                          timeout=timeout)


def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def node_hello(node_id, role):
    """A NodeMessage{hello: NodeHello{node_id, role, model "tiny"}} in
    protobuf wire format (no generated stubs needed)."""
    nid = node_id.encode()
    hello = (b"\x0a" + varint(len(nid)) + nid + b"\x10" + varint(ROLE[role])
             + b"\x1a\x04tiny")
    return b"\x0a" + varint(len(hello)) + hello


def self_token(path):
    for line in open(path):
        w = line.split()
        if len(w) == 3 and w[0] == "self":
            return w[2]
    bail("no self line in " + path)


def main():
    if shutil.which("openssl") is None:
        print("1..0 # SKIP the openssl command is missing (make deps)")
        return 1 if CI else 0
    import grpc

    tmp, model, env = nc.setup("baton-auth-it-")
    for k in list(env):
        if k.startswith("BATON_TLS_") or k in ("BATON_INSECURE",
                                               "BATON_CLUSTER_TOKEN_FILE"):
            del env[k]
    tokdir = os.path.join(tmp, "tokens")
    run([os.path.join(SRC, "deploy/local/baton-tokens"), tokdir]).check_returncode()
    tf = lambda role: os.path.join(tokdir, role + ".tokens")
    tokens = {r: self_token(tf(r)) for r in ("router", "prefill", "decode", "kvstore", "both")}
    router_bin = os.path.join(BUILD, "router/baton-router")
    prefill_bin = os.path.join(BUILD, "prefill_node/baton-prefill")
    decode_bin = os.path.join(BUILD, "decode_node/baton-decode")
    kv_bin = os.path.join(BUILD, "kvstore/baton-kvstore")

    def call(target, kind, method, body, token=None, creds=None):
        """(code name, details) of one call with raw protobuf bytes."""
        ch = (grpc.secure_channel(target, creds) if creds
              else grpc.insecure_channel(target))
        md = [(MD_KEY, token)] if token else None
        ident = dict(request_serializer=lambda b: b,
                     response_deserializer=lambda b: b)
        try:
            if kind == "unary":
                ch.unary_unary(method, **ident)(body, metadata=md, timeout=15)
            elif kind == "stream":
                for _ in ch.unary_stream(method, **ident)(body, metadata=md, timeout=15):
                    pass
            else:
                for _ in ch.stream_stream(method, **ident)(iter([body]), metadata=md,
                                                           timeout=15):
                    pass
            return "OK", ""
        except grpc.RpcError as e:
            return e.code().name, e.details() or ""
        finally:
            ch.close()

    def register(target, role, token=None, creds=None, node_id="fake"):
        return call(target, "bidi", "/baton.v1.Registry/Register",
                    node_hello(node_id, role), token, creds)

    # 0. bad token files: exit 2, one line naming the file, never a token
    bad_dir = os.path.join(tmp, "bad")
    os.mkdir(bad_dir, 0o700)
    secret = "s3cret-never-printed-0123456789"
    cases = [
        ("world.tokens", secret + "\n", 0o644, r"readable by every user"),
        ("short.tokens", "self prefill short\n", 0o600, r"short\.tokens:1: the token must be 16"),
        ("role.tokens", "self pilot " + secret + "\n", 0o600, r"role\.tokens:1: roles must be"),
        ("two.tokens", "# c\nself prefill %s\nself decode %s\n" % (secret, secret), 0o600,
         r"two\.tokens:3: a second \"self\" line"),
        ("hash.tokens", "accept router sha256:abc\n", 0o600, r"hash\.tokens:1: sha256: needs 64 hex"),
        ("empty.tokens", "# nothing\n", 0o600, r"empty\.tokens: no token in it"),
    ]
    for name, text, mode, pat in cases:
        p = os.path.join(bad_dir, name)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)
        out = run([prefill_bin, "--model", model, "--grpc-port", "0", "--http-port", "0",
                   "--cluster-token-file", p], env=env)
        lines = out.stderr.strip().splitlines()
        tap(out.returncode == 2 and len(lines) == 1 and re.search(pat, lines[0])
            and secret not in out.stderr,
            "token file %s: exit 2, one line /%s/, no token in it" % (name, pat),
            "exit %d: %s" % (out.returncode, out.stderr.strip()))

    # 1. a cluster with per-role tokens
    _, rg, rh = start("router", [router_bin, "--model", model, "--grpc-port", "0",
                                 "--http-port", "0", "--heartbeat", "100ms",
                                 "--cluster-token-file", tf("router")], env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    _, kg, kh = start("kvstore", [kv_bin, "--grpc-port", "0", "--http-port", "0",
                                  "--dram-bytes", "16M", "--router", target,
                                  "--cluster-token-file", tf("kvstore")], env, tmp)
    node_args = ["--model", model, "--router", target, "--threads", "1",
                 "--kvstore", "ipv4:127.0.0.1:%d" % kg]
    _, pg, _ = start("prefill", [prefill_bin] + node_args
                     + ["--cluster-token-file", tf("prefill")], env, tmp)
    _, dg, dh = start("decode", [decode_bin] + node_args
                      + ["--kv-blocks", "256", "--cluster-token-file", tf("decode")], env, tmp)
    tap(wait_ready(rh, 30), "router ready: prefill and decode registered with their tokens")
    rlog = os.path.join(tmp, "router.err")
    deadline = time.time() + 15
    while time.time() < deadline and "joined: role kvstore" not in open(rlog).read():
        time.sleep(0.1)
    tap("joined: role kvstore" in open(rlog).read(), "the kvstore registered with its token")
    st, body = nc.http_json(rh, "/v1/completions",
                            {"model": "tiny", "prompt": "the baton passes " * 8,
                             "max_tokens": 8, "ignore_eos": True})
    ntok = body.get("usage", {}).get("completion_tokens") if st == 200 else None
    tap(st == 200 and ntok == 8,
        "a completion through the authenticated cluster: 8 tokens", st, body)
    deadline = time.time() + 5
    while time.time() < deadline and not (gauge(kh, "baton_kvstore_put_blocks_total") or 0):
        time.sleep(0.1)
    tap((gauge(kh, "baton_kvstore_put_blocks_total") or 0) >= 1,
        "the prefill node publishes blocks to the kvstore with its token")

    loc = "127.0.0.1:%d" % rg
    code, msg = register(loc, "prefill")
    tap(code == "UNAUTHENTICATED" and "needs a cluster credential" in msg
        and "no " + MD_KEY in msg,
        "a fake node without a token cannot register: UNAUTHENTICATED", code, msg)
    code, msg = register(loc, "prefill", token="x" * 40)
    tap(code == "UNAUTHENTICATED" and "not one this server accepts" in msg,
        "a fake node with an unknown token cannot register: UNAUTHENTICATED", code, msg)
    code, msg = register(loc, "decode", token=tokens["prefill"])
    tap(code == "PERMISSION_DENIED" and "may not register as decode" in msg
        and "grants prefill" in msg,
        "the prefill token cannot register a decode node: PERMISSION_DENIED", code, msg)
    code, msg = register(loc, "both", token=tokens["decode"])
    tap(code == "PERMISSION_DENIED" and "may not register as prefill+decode" in msg,
        "the decode token cannot register a --role both node", code, msg)
    code, msg = register(loc, "prefill", token=tokens["router"])
    tap(code == "PERMISSION_DENIED" and "Registry/Register is for role" in msg
        and "grants router" in msg,
        "the router's token cannot register a node: PERMISSION_DENIED", code, msg)
    n_decode = gauge(rh, 'baton_router_nodes{role="decode"}')
    code, msg = call("127.0.0.1:%d" % dg, "stream", "/baton.v1.Decode/DecodeStream", b"")
    tap(code == "UNAUTHENTICATED" and "DecodeStream needs a cluster credential" in msg,
        "DecodeStream on the decode node without credentials: UNAUTHENTICATED", code, msg)
    code, msg = call("127.0.0.1:%d" % dg, "unary", "/baton.v1.Decode/RenewLease", b"",
                     token=tokens["prefill"])
    tap(code == "PERMISSION_DENIED" and "is for role router" in msg,
        "RenewLease with a prefill token: PERMISSION_DENIED (router only)", code, msg)
    code, msg = call("127.0.0.1:%d" % pg, "unary", "/baton.v1.Prefill/Prefill", b"")
    tap(code == "UNAUTHENTICATED", "Prefill on the prefill node without credentials: "
        "UNAUTHENTICATED", code, msg)
    code, msg = call("127.0.0.1:%d" % kg, "unary", "/baton.v1.KvStore/Reserve", b"")
    tap(code == "UNAUTHENTICATED", "KvStore/Reserve without credentials: UNAUTHENTICATED",
        code, msg)
    code, msg = call("127.0.0.1:%d" % pg, "unary", "/grpc.health.v1.Health/Check", b"")
    tap(code == "OK", "health checks stay open", code, msg)

    # a real decode node holding only the prefill token never joins
    start("fake-decode", [decode_bin] + node_args
          + ["--kv-blocks", "64", "--node-id", "impostor",
             "--cluster-token-file", tf("prefill")], env, tmp)
    deadline = time.time() + 20
    while time.time() < deadline and "impostor may not register as decode" not in open(rlog).read():
        time.sleep(0.2)
    tap("impostor may not register as decode" in open(rlog).read()
        and gauge(rh, 'baton_router_nodes{role="decode"}') == n_decode,
        "baton-decode with the prefill token is refused and never joins")
    flog = open(os.path.join(tmp, "fake-decode.err")).read()
    n_warn = flog.count("registrar: the router refuses this node (PERMISSION_DENIED")
    tap(n_warn == 1 and "may not register as decode" in flog,
        "the refused node says why, once, while it retries (%d lines)" % n_warn)

    def refused(port, reason):
        _, text = nc.http_get(port, "/metrics")
        m = re.search(r'^baton_rpc_auth_refused_total\{reason="%s"\} (\S+)$' % reason,
                      text, re.M)
        return float(m.group(1)) if m else None
    ru, rp = refused(rh, "unauthenticated"), refused(rh, "permission_denied")
    tap(ru is not None and ru >= 2 and rp is not None and rp >= 4,
        "the router counts its refusals (unauthenticated %s, permission_denied %s)" % (ru, rp))
    du = refused(dh, "unauthenticated")
    tap(du is not None and du >= 1, "the decode node counts its refusal (%s)" % du)
    rss = gauge(rh, "process_resident_memory_bytes")
    tap(rss is not None and rss > 0, "the process metrics still refresh beside the "
        "refusal counter (router rss %s)" % rss)

    # the tokens never reach a log or a command line
    leaks = []
    for f in os.listdir(tmp):
        if f.endswith(".err"):
            text = open(os.path.join(tmp, f), errors="replace").read()
            leaks += ["%s in %s" % (r, f) for r, t in tokens.items() if t in text]
    for p in nc.PROCS:
        try:
            cmd = open("/proc/%d/cmdline" % p.pid, "rb").read().decode(errors="replace")
        except OSError:
            continue
        leaks += ["%s in cmdline of %d" % (r, p.pid) for r, t in tokens.items() if t in cmd]
    tap(not leaks, "no token in any log or command line", *leaks)
    nc.cleanup()
    del nc.PROCS[:]

    # 2. mTLS: roles in certificates, no tokens
    certs = os.path.join(tmp, "certs")
    out = run([os.path.join(SRC, "deploy/local/baton-certs"), certs], timeout=60)
    if out.returncode != 0:
        bail("baton-certs failed: " + out.stderr)
    c = lambda f: os.path.join(certs, f)
    tls_for = lambda name: ["--tls-cert", c(name + ".pem"), "--tls-key", c(name + ".key"),
                            "--tls-ca", c("ca.pem")]
    _, rg, rh = start("mtls-router", [router_bin, "--model", model, "--grpc-port", "0",
                                      "--http-port", "0", "--heartbeat", "100ms",
                                      "--http-tls-cert", c("node.pem"),
                                      "--http-tls-key", c("node.key")] + tls_for("router"),
                      env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    node_args = ["--model", model, "--router", target, "--threads", "1"]
    start("mtls-prefill", [prefill_bin] + node_args + tls_for("prefill"), env, tmp)
    start("mtls-decode", [decode_bin] + node_args + ["--kv-blocks", "256"]
          + tls_for("decode"), env, tmp)

    def creds(name):
        rd = lambda p: open(p, "rb").read()
        return grpc.ssl_channel_credentials(root_certificates=rd(c("ca.pem")),
                                            private_key=rd(c(name + ".key")),
                                            certificate_chain=rd(c(name + ".pem")))
    loc = "127.0.0.1:%d" % rg
    code, msg = register(loc, "prefill", creds=creds("client"))
    tap(code == "UNAUTHENTICATED" and "baton://role/" in msg,
        "mtls: a certificate without a role cannot register: UNAUTHENTICATED", code, msg)
    code, msg = register(loc, "decode", creds=creds("prefill"))
    tap(code == "PERMISSION_DENIED" and "may not register as decode" in msg,
        "mtls: the prefill certificate cannot register a decode node", code, msg)
    code, msg = register(loc, "kvstore", creds=creds("kvstore"), node_id="kv-probe")
    tap(code not in ("UNAUTHENTICATED", "PERMISSION_DENIED"),
        "mtls: the kvstore certificate passes as a kvstore (%s)" % code, msg)

    # 3. HTTPS on the router's HTTP API
    ctx = ssl.create_default_context(cafile=c("ca.pem"))

    def https(method, path, body=None):
        try:
            h = http.client.HTTPSConnection("127.0.0.1", rh, timeout=30, context=ctx)
            h.request(method, path, json.dumps(body) if body else None,
                      {"content-type": "application/json"} if body else {})
            r = h.getresponse()
            return r.status, r.read().decode()
        except OSError as e:
            return 0, str(e)
    deadline = time.time() + 30
    while time.time() < deadline and https("GET", "/readyz")[0] != 200:
        time.sleep(0.2)
    st, _ = https("GET", "/readyz")
    tap(st == 200, "mtls cluster ready, seen over https (nodes with their role "
        "certificates registered)", st)
    st, text = https("POST", "/v1/completions", {"model": "tiny", "prompt": "over https",
                                                  "max_tokens": 8, "ignore_eos": True})
    tap(st == 200 and json.loads(text).get("usage", {}).get("completion_tokens") == 8,
        "a completion over https (the router calls the nodes with the router "
        "certificate)", st, text[:300])
    out = run(["curl", "-sS", "--cacert", c("ca.pem"), "https://127.0.0.1:%d/v1/models" % rh])
    tap(out.returncode == 0 and '"tiny"' in out.stdout, "curl --cacert: /v1/models over https",
        out.stdout[:300], out.stderr)
    out = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
               "https://127.0.0.1:%d/v1/models" % rh])
    tap(out.returncode != 0, "curl without the CA refuses the certificate", out.stderr)
    out = run(["curl", "-sS", "-w", "\\n%{http_code}", "http://127.0.0.1:%d/v1/models" % rh])
    tap(out.returncode == 0 and out.stdout.endswith("\n400") and "https_required" in out.stdout,
        "plain http on the https port: 400 https_required, then closed", out.stdout, out.stderr)
    st, _ = https("GET", "/livez")
    tap(st == 200, "the https port still serves after the plain request", st)
    npm_dir = os.path.join(BUILD, "npm-openai")
    if os.path.isdir(os.path.join(npm_dir, "node_modules", "openai")) and shutil.which("node"):
        script = os.path.join(npm_dir, "https_client.mjs")
        with open(script, "w") as f:
            f.write("import OpenAI from 'openai';\n"
                    "const c = new OpenAI({ baseURL: process.argv[2], apiKey: 'none' });\n"
                    "const r = await c.completions.create({ model: 'tiny', prompt: 'npm over "
                    "https', max_tokens: 8, ignore_eos: true });\n"
                    "console.log(JSON.stringify(r.usage));\n")
        nenv = dict(env)
        nenv["NODE_EXTRA_CA_CERTS"] = c("ca.pem")
        out = run(["node", script, "https://127.0.0.1:%d/v1" % rh], env=nenv, timeout=60)
        tap(out.returncode == 0 and '"completion_tokens":8' in out.stdout,
            "the openai npm client over https (NODE_EXTRA_CA_CERTS)", out.stdout, out.stderr)
    else:
        print("# the openai npm client is not installed (the interop test installs it): "
              "skipped over https")
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
