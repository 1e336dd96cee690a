#!/usr/bin/python3
"""The gRPC equivalents of OpenAI's logit_bias and echo (issue 21), driven
by Debian's python3-grpcio against a router, a prefill node and two decode
nodes: logit_bias forces and bans token ids and refuses bad entries with
INVALID_ARGUMENT naming them (a decode node called directly too); echo
sends the prompt first, and its prompt logprobs equal, bit for bit, the
logprobs the same tokens got when they were generated.

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


def check_node_bias(out, decode_port):
    """A decode node called directly checks logit_bias itself."""
    import subprocess
    import grpc
    proto = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "proto")
    subprocess.run(["protoc", "-I", proto, "--python_out=" + out, "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                    "node.proto"], check=True, timeout=60)
    import node_pb2
    import node_pb2_grpc
    stub = node_pb2_grpc.DecodeStub(grpc.insecure_channel("127.0.0.1:%d" % decode_port))
    for entries, what in (({5000: 1.0}, "outside the vocabulary"),
                          ({7: -100.5}, "[-100, 100]")):
        req = node_pb2.DecodeRequest(request_id="bias-direct", token_ids=[1, 2, 3])
        req.sampling.max_tokens = 4
        req.tenant.root_hash = b"\0" * 32
        bias(req, entries)
        try:
            list(stub.DecodeStream(req, timeout=30))
            code, details = None, ""
        except grpc.RpcError as e:
            code, details = e.code(), e.details()
        nc.tap(code == grpc.StatusCode.INVALID_ARGUMENT and what in details,
               "decode node called directly, logit_bias %s: INVALID_ARGUMENT (%s)"
               % (entries, details))


def messages(stub, req, timeout=60):
    return list(stub.Generate(req, timeout=timeout))


def check_echo(pb, stub):
    import struct
    f32 = lambda x: struct.pack("<f", x)  # noqa: E731
    tok = stub.Tokenize(pb.TokenizeRequest(model="tiny", prompt="Hello, Baton",
                                          add_special_tokens=True), timeout=30)
    prompt = list(tok.token_ids)
    req = request(pb)
    req.sampling.logprobs = 3
    gen = messages(stub, req)
    ids = [t for m in gen for t in m.token_ids]
    lps = [lp for m in gen for lp in m.logprobs]
    nc.tap(len(ids) == 8 and len(lps) == 8 and not gen[0].prompt_text,
           "logprobs reference: 8 tokens, no prompt without echo")
    req = request(pb, echo=True)
    ms = messages(stub, req)
    nc.tap(ms[0].prompt_text.endswith("Hello, Baton") and not ms[0].token_ids
           and [t for m in ms for t in m.token_ids] == ids
           and all(not m.prompt_text for m in ms[1:]),
           "echo: the first message is the prompt alone (%r), then the same tokens"
           % ms[0].prompt_text)
    # the prompt is the first prompt ++ the 8 generated tokens: the logprobs
    # of those 8 as prompt tokens are those they had when generated
    req = pb.GenerateRequest(model="tiny", echo=True)
    req.tokens.ids.extend(prompt + ids)
    req.sampling.max_tokens = 1
    req.sampling.temperature = 0
    req.sampling.logprobs = 3
    ms = messages(stub, req)
    plp = list(ms[0].prompt_logprobs)
    tail = plp[len(prompt) - 1:]
    same = len(plp) == len(prompt) + len(ids) - 1 and len(tail) == 8 and all(
        a.token_id == b.token_id and f32(a.logprob) == f32(b.logprob)
        and [(t.token_id, f32(t.logprob)) for t in a.top]
        == [(t.token_id, f32(t.logprob)) for t in b.top]
        for a, b in zip(tail, lps))
    nc.tap(same and all(e.token_id == t for e, t in zip(plp, (prompt + ids)[1:])),
           "echo with logprobs: one entry per prompt token after the first; "
           "those of generated tokens equal their generation's bit for bit",
           "prompt %s" % [(e.token_id, e.logprob) for e in plp],
           "generated %s" % [(e.token_id, e.logprob) for e in lps])
    ms2 = messages(stub, req)
    nc.tap(ms2[0].SerializeToString() == ms[0].SerializeToString(),
           "echo with logprobs twice: the same prompt message")


def main():
    import grpc
    tmp, model, env = nc.setup("baton-grpc-choices-")
    stub_dir = tempfile.mkdtemp(dir=tmp)
    pb, pb_grpc, _, _ = stubs(stub_dir)
    _, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms"],
                         env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1"]
    nc.start("p1", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "p1"], env, tmp)
    dports = []
    for d in ("d1", "d2"):
        dports.append(nc.start(d, [os.path.join(BUILD, "decode_node/baton-decode")]
                               + common + ["--node-id", d], env, tmp)[1])
    nc.tap(nc.wait_ready(rh), "router ready with a prefill and two decode nodes")
    stub = pb_grpc.GenerateStub(grpc.insecure_channel("127.0.0.1:%d" % rg))
    check_logit_bias(pb, stub)
    check_echo(pb, stub)
    check_node_bias(stub_dir, dports[0])
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
