#!/usr/bin/python3
"""The gRPC equivalents of OpenAI's logit_bias, echo and n > 1 (issue 21),
driven by Debian's python3-grpcio against a router, a prefill node and two
decode nodes: logit_bias forces and bans token ids and refuses bad entries
with INVALID_ARGUMENT naming them.

usage: front_grpc_choices.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402
from front_grpc import stubs, request  # noqa: E402

BUILD = nc.BUILD


def tokens(stub, req, timeout=60):
    """(grpc code or None, token ids, text, final) of a whole Generate."""
    import grpc
    ids, text, final = [], "", None
    try:
        for m in stub.Generate(req, timeout=timeout):
            ids += list(m.token_ids)
            text += m.text
            if m.HasField("final"):
                final = m.final
    except grpc.RpcError as e:
        return e.code(), ids, text, e.details()
    return None, ids, text, final


def bias(req, entries):
    for tid, b in entries.items():
        e = req.sampling.logit_bias.add()
        e.token_id = tid
        e.bias = b
    return req


def check_logit_bias(pb, stub):
    import grpc
    code, ref, _, _ = tokens(stub, request(pb))
    nc.tap(code is None and len(ref) == 8, "greedy reference: %s" % ref)
    code, ids, _, _ = tokens(stub, bias(request(pb), {ref[0]: -100.0}))
    nc.tap(code is None and ids[0] != ref[0],
           "logit_bias -100 bans the greedy first token %d (got %s)" % (ref[0], ids))
    force = 77 if ref[0] != 77 else 78
    for temp in (0.0, 1.0):
        req = bias(request(pb), {force: 100.0})
        req.sampling.temperature = temp
        req.sampling.seed = 11
        code, ids, _, _ = tokens(stub, req)
        nc.tap(code is None and ids == [force] * 8,
               "logit_bias +100 forces token %d at temperature %g (%s)" % (force, temp, ids))
    bad = [({5000: 1.0}, "outside the vocabulary"), ({5: 100.5}, "[-100, 100]"),
           ({5: float("nan")}, "[-100, 100]")]
    for entries, what in bad:
        code, _, _, details = tokens(stub, bias(request(pb), entries))
        nc.tap(code == grpc.StatusCode.INVALID_ARGUMENT and what in (details or ""),
               "logit_bias %s: INVALID_ARGUMENT (%s: %s)" % (entries, code, details))
    req = bias(request(pb), {5: 1.0})
    bias(req, {5: 2.0})
    code, _, _, details = tokens(stub, req)
    nc.tap(code == grpc.StatusCode.INVALID_ARGUMENT and "twice" in (details or ""),
           "logit_bias with token 5 twice: INVALID_ARGUMENT (%s)" % details)
    req = request(pb)
    bias(req, {i: 1.0 for i in range(301)})
    code, _, _, details = tokens(stub, req)
    nc.tap(code == grpc.StatusCode.INVALID_ARGUMENT and "300" in (details or ""),
           "logit_bias with 301 entries: INVALID_ARGUMENT (%s)" % details)


def main():
    import grpc
    tmp, model, env = nc.setup("baton-grpc-choices-")
    pb, pb_grpc, _, _ = stubs(tempfile.mkdtemp(dir=tmp))
    _, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms"],
                         env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1"]
    nc.start("p1", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "p1"], env, tmp)
    for d in ("d1", "d2"):
        nc.start(d, [os.path.join(BUILD, "decode_node/baton-decode")] + common
                 + ["--node-id", d], env, tmp)
    nc.tap(nc.wait_ready(rh), "router ready with a prefill and two decode nodes")
    stub = pb_grpc.GenerateStub(grpc.insecure_channel("127.0.0.1:%d" % rg))
    check_logit_bias(pb, stub)
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
