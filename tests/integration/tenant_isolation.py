#!/usr/bin/python3
"""Tenant isolation of the prefix caches (DESIGN §3, §9; issue 9): a router
with API keys of two tenants whose salts differ, a prefill and a decode
node with --kvstore, and a baton-kvstore. The same prompt from both
tenants never shares a block, neither in the nodes' pools nor in the
kvstore, while each tenant reuses its own; the tokens are the same for
both (the salt changes hashes, never results). Requests without a key or
with a wrong one get 401.

usage: tenant_isolation.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import http.client
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402  (tap, start, gauge, ...)

BUILD = nc.BUILD
MODE = nc.MODE
KEY_A = "key-of-tenant-a-0123"
KEY_B = "key-of-tenant-b-4567"
KEY_OPS = "key-of-the-operators-89"


def complete(port, ids, key):
    """(status, text, cached_tokens) of a greedy /v1/completions."""
    body = json.dumps({"model": "tiny", "prompt": ids, "max_tokens": 12,
                       "temperature": 0, "ignore_eos": True})
    hdr = {"content-type": "application/json"}
    if key is not None:
        hdr["authorization"] = "Bearer " + key
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("POST", "/v1/completions", body, hdr)
        r = c.getresponse()
        js = json.loads(r.read().decode() or "{}")
    except (OSError, ValueError):
        return 0, None, None
    if r.status != 200:
        return r.status, None, None
    return (r.status, js["choices"][0]["text"],
            js["usage"]["prompt_tokens_details"]["cached_tokens"])


def main():
    tmp, model, env = nc.setup("baton-tenant-it-")
    keys = os.path.join(tmp, "keys.json")
    with open(keys, "w") as f:
        json.dump({"keys": [
            {"key": KEY_A, "tenant": "a", "salt": "a1a2a3a4a5a6a7a8"},
            {"key": KEY_B, "tenant": "b", "salt": "b1b2b3b4b5b6b7b8"},
            {"key": KEY_OPS, "tenant": "ops", "admin": True}]}, f)
    # a keys file whose salt is not a string is refused, not read as the
    # empty (shared) salt
    bad = os.path.join(tmp, "bad-keys.json")
    with open(bad, "w") as f:
        json.dump({"keys": [{"key": KEY_A, "tenant": "a", "salt": 1234}]}, f)
    r = subprocess.run([os.path.join(BUILD, "router/baton-router"), "--model",
                        model, "--grpc-port", "0", "--http-port", "0",
                        "--api-keys", bad], capture_output=True, text=True,
                       timeout=30)
    nc.tap(r.returncode != 0 and "salt" in r.stderr and KEY_A not in r.stderr,
           "a keys file with a non-string salt is refused at start (%s)"
           % r.stderr.strip().splitlines()[-1:])
    env["UCX_POSIX_ERROR_HANDLING"] = "y"
    env["UCX_SYSV_ERROR_HANDLING"] = "y"
    _, kg, kh = nc.start("kvstore", [os.path.join(BUILD, "kvstore/baton-kvstore"),
                                     "--grpc-port", "0", "--http-port", "0",
                                     "--disk-dir", os.path.join(tmp, "disk"),
                                     "--dram-bytes", "16M"], env, tmp)
    _, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms",
                                    "--api-keys", keys], env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1",
              "--kvstore", "ipv4:127.0.0.1:%d" % kg]
    nc.start("p1", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "p1"], env, tmp)
    nc.start("d1", [os.path.join(BUILD, "decode_node/baton-decode")] + common
             + ["--node-id", "d1"], env, tmp)
    nc.tap(nc.wait_ready(rh), "router ready (auth on) with a prefill and a "
           "decode node and a kvstore")

    ids = [4091] + [(i * 31 + 17) % 4000 for i in range(1, 160)]
    full = (len(ids) - 1) // 16 * 16

    st, _, _ = complete(rh, ids, None)
    nc.tap(st == 401, "no API key: 401 (%d)" % st)
    st, _, _ = complete(rh, ids, "not-a-key-at-all")
    nc.tap(st == 401, "a wrong API key: 401 (%d)" % st)

    st, text_a, c = complete(rh, ids, KEY_A)
    nc.tap(st == 200 and c == 0, "tenant a, first time: computed (%s cached)" % c)
    st, t, c = complete(rh, ids, KEY_A)
    nc.tap(st == 200 and t == text_a and c == full,
           "tenant a again: its own blocks (%s cached)" % c)
    st, text_b, c = complete(rh, ids, KEY_B)
    nc.tap(st == 200 and c == 0, "tenant b, the same prompt: nothing of a's "
           "is shared (%s cached)" % c)
    nc.tap(text_b == text_a, "both tenants get the same tokens")
    st, t, c = complete(rh, ids, KEY_B)
    nc.tap(st == 200 and t == text_a and c == full,
           "tenant b again: its own blocks (%s cached)" % c)

    # Admin needs an admin key: none and a tenant's are refused
    def ctl(*args):
        return subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router",
                               target] + list(args), capture_output=True,
                              text=True, timeout=10)
    r = ctl("flush-cache")
    nc.tap(r.returncode == 1 and "UNAUTHENTICATED" in r.stderr,
           "batonctl without a key: UNAUTHENTICATED (%s)" % r.stderr.strip())
    r = ctl("--api-key", KEY_A, "flush-cache")
    nc.tap(r.returncode == 1 and "PERMISSION_DENIED" in r.stderr and
           KEY_A not in r.stderr + r.stdout,
           "batonctl with a tenant's key: PERMISSION_DENIED, the key not "
           "printed (%s)" % r.stderr.strip())

    # the nodes' pools emptied: each tenant reads its own blocks from the
    # kvstore, which holds both copies side by side
    time.sleep(0.5)
    env_ctl = dict(os.environ, BATON_API_KEY=KEY_OPS)
    r = subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router", target,
                        "flush-cache"], capture_output=True, text=True,
                       timeout=10, env=env_ctl)
    nc.tap(r.returncode == 0, "batonctl with the admin key (BATON_API_KEY) "
           "flushes the nodes' caches (%s)" % r.stdout.strip())
    time.sleep(0.3)
    blocks = nc.gauge(kh, 'baton_kvstore_blocks{tier="disk"}')
    nc.tap(blocks is not None and blocks >= 2 * (full // 16),
           "the kvstore holds each tenant's blocks apart (%s blocks)" % blocks)
    for name, key in (("a", KEY_A), ("b", KEY_B)):
        st, t, c = complete(rh, ids, key)
        with open(os.path.join(tmp, "router.err")) as f:
            kv = re.findall(r"prefilled on \S+: \d+ tokens, \d+ cached "
                            r"\(\d+ node, (\d+) kvstore\)", f.read())
        nc.tap(st == 200 and t == text_a and c == full and kv and
               int(kv[-1]) == full,
               "tenant %s after a flush: its own blocks from the kvstore (%s "
               "cached, %s from the kvstore)" % (name, c, kv[-1] if kv else "?"))

    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
