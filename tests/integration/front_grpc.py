#!/usr/bin/python3
"""The gRPC front door against real clients (issue 15): Debian's
python3-grpcio calls baton.v1.Generate on a router + prefill + decode
cluster the way applications do, with deadlines that fire before and
during a stream, cancel() mid-stream, oversized messages, stop strings,
client request ids, health checks and bad chat roles; prompts tokenized
on the router's worker thread (--threads 1) give the tokens the loop's
Tokenize gives, and a call cancelled while its prompt waits for that
thread starts nothing. After each case the
router is still the same process, every KV block is back in the decode
node's pool and a normal request answers; no daemon logs the clients that
left as a warning or an error.

usage: front_grpc.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import os
import re
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402  (tap, start, gauge, ...)

BUILD = nc.BUILD
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LONG = 1500      # max_tokens of a request that outlives its deadline


def stubs(out):
    import subprocess
    proto = os.path.join(ROOT, "proto")
    plugin = "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin"
    subprocess.run(["protoc", "-I", proto, "--python_out=" + out, "--grpc_out=" + out,
                    plugin, "common.proto", "generate.proto"], check=True, timeout=60)
    hdir = os.path.join(proto, "grpc", "health", "v1")
    subprocess.run(["protoc", "-I", hdir, "--python_out=" + out, "--grpc_out=" + out,
                    plugin, os.path.join(hdir, "health.proto")], check=True, timeout=60)
    sys.path.insert(0, out)
    import generate_pb2
    import generate_pb2_grpc
    import health_pb2
    import health_pb2_grpc
    return generate_pb2, generate_pb2_grpc, health_pb2, health_pb2_grpc


def request(pb, prompt="Hello, Baton", n=8, **kw):
    req = pb.GenerateRequest(model="tiny", prompt=prompt, **kw)
    req.sampling.max_tokens = n
    req.sampling.temperature = 0
    req.sampling.ignore_eos = True
    return req


def collect(stub, req, timeout=60):
    """(grpc code or None, text, final) of a whole Generate call."""
    import grpc
    text, final = "", None
    try:
        for m in stub.Generate(req, timeout=timeout):
            text += m.text
            if m.HasField("final"):
                final = m.final
    except grpc.RpcError as e:
        return e.code(), text, final
    return None, text, final


def blocks_back(dh, total, secs=15):
    """Waits until the decode node's pool has every block free again."""
    deadline = time.time() + secs
    free = None
    while time.time() < deadline:
        free = nc.gauge(dh, "baton_node_kv_free_blocks")
        if free == total:
            return True, free
        time.sleep(0.1)
    return False, free


def main():
    import grpc
    tmp, model, env = nc.setup("baton-front-grpc-")
    pb, pb_grpc, hpb, hpb_grpc = stubs(tempfile.mkdtemp(dir=tmp))
    router, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                         "--model", model, "--grpc-port", "0",
                                         "--http-port", "0", "--heartbeat", "100ms",
                                         "--threads", "1"],
                              env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1"]
    nc.start("p1", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "p1"], env, tmp)
    _, _, dh = nc.start("d1", [os.path.join(BUILD, "decode_node/baton-decode")] + common
                        + ["--node-id", "d1"], env, tmp)
    nc.tap(nc.wait_ready(rh), "router ready with a prefill and a decode node")
    total = nc.gauge(dh, "baton_node_kv_free_blocks")
    channel = grpc.insecure_channel("127.0.0.1:%d" % rg)
    stub = pb_grpc.GenerateStub(channel)

    code, ref, final = collect(stub, request(pb))
    nc.tap(code is None and ref and final is not None,
           "a plain Generate answers (%r)" % ref[:40])

    def alive_and_clean(what):
        ok_blocks, free = blocks_back(dh, total)
        c, text, _ = collect(stub, request(pb))
        nc.tap(router.poll() is None and ok_blocks and c is None and text == ref,
               "%s: the router lives, %s/%s blocks free, the next request answers"
               % (what, free, total), "code %s text %r" % (c, text[:40]))

    # 1. a deadline that passes before the first token, four times
    codes = []
    for _ in range(4):
        codes.append(collect(stub, request(pb, n=LONG), timeout=0.001)[0])
    nc.tap(all(c == grpc.StatusCode.DEADLINE_EXCEEDED for c in codes),
           "deadline 1 ms: DEADLINE_EXCEEDED each time (%s)" % codes)
    alive_and_clean("after 1 ms deadlines")

    # 2. a deadline that passes mid-stream
    codes, lens = [], []
    for _ in range(3):
        c, text, _ = collect(stub, request(pb, n=LONG), timeout=0.5)
        codes.append(c)
        lens.append(len(text))
    nc.tap(all(c == grpc.StatusCode.DEADLINE_EXCEEDED for c in codes),
           "deadline 0.5 s mid-stream: DEADLINE_EXCEEDED (%s, text %s)" % (codes, lens))
    alive_and_clean("after mid-stream deadlines")

    # 3. cancel() after 5 messages, and at once
    got = []
    for after in (5, 1, 0):
        call = stub.Generate(request(pb, n=LONG), timeout=60)
        n = 0
        try:
            if after == 0:
                call.cancel()
            for _ in call:
                n += 1
                if n == after:
                    call.cancel()
        except grpc.RpcError as e:
            got.append((n, e.code()))
    nc.tap(len(got) == 3 and all(c == grpc.StatusCode.CANCELLED for _, c in got),
           "cancel() after 5, 1 and 0 messages: CANCELLED (%s)" % got)
    alive_and_clean("after cancels")

    # 4. many at once, mixed: deadlines, cancels, and plain ones
    results = []

    def one(i):
        if i % 3 == 0:
            results.append(("deadline", collect(stub, request(pb, n=LONG),
                                                timeout=0.05 + 0.1 * (i % 5))[0]))
        elif i % 3 == 1:
            call = stub.Generate(request(pb, n=LONG), timeout=60)
            threading.Timer(0.05 * (i % 7), call.cancel).start()
            try:
                for _ in call:
                    pass
                results.append(("cancel", None))
            except grpc.RpcError as e:
                results.append(("cancel", e.code()))
        else:
            results.append(("plain", collect(stub, request(pb))[0]))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    bad = [r for r in results if
           (r[0] == "plain" and r[1] is not None) or
           (r[0] == "deadline" and r[1] != grpc.StatusCode.DEADLINE_EXCEEDED) or
           (r[0] == "cancel" and r[1] != grpc.StatusCode.CANCELLED)]
    nc.tap(len(results) == 24 and not bad,
           "24 concurrent calls with deadlines, cancels and none: each ends as "
           "its client chose", "unexpected: %s" % bad)
    alive_and_clean("after the concurrent mix")

    # 5. messages over the 4 MiB limit of the Generate service
    for mib in (5, 20):
        c, _, _ = collect(stub, pb.GenerateRequest(model="tiny", prompt="a" * (mib << 20)))
        nc.tap(c == grpc.StatusCode.RESOURCE_EXHAUSTED,
               "a %d MiB Generate request: RESOURCE_EXHAUSTED (%s)" % (mib, c))
    alive_and_clean("after oversized requests")

    # 6. the final message names the request, however it ended
    ids = []
    for i in range(10):
        _, _, fin = collect(stub, request(pb, n=4 + i))
        ids.append(fin.request_id if fin is not None else None)
    nc.tap(all(x and x.startswith("req-") for x in ids),
           "GenerateFinal.request_id is set on every call (%s)" % ids[:3])
    stop_at = ref[2:5] if len(ref) > 6 else None
    if stop_at:
        req = request(pb, n=8)
        req.sampling.stop.append(stop_at)
        c, text, fin = collect(stub, req)
        nc.tap(c is None and fin is not None and fin.request_id.startswith("req-")
               and stop_at not in text,
               "a stop string ends the call with request_id set (%r)"
               % (fin.request_id if fin else None))
    _, _, fin = collect(stub, request(pb, request_id="client-id-42"))
    nc.tap(fin is not None and fin.request_id == "client-id-42",
           "a client-supplied request_id comes back (%r)" % (fin.request_id if fin else None))

    # 7. health of the Generate service, as docs/api.md shows it
    hstub = hpb_grpc.HealthStub(channel)
    for svc in ("", "baton.v1.Generate"):
        try:
            st = hstub.Check(hpb.HealthCheckRequest(service=svc), timeout=5).status
        except grpc.RpcError as e:
            st = e.code()
        nc.tap(st == hpb.HealthCheckResponse.SERVING,
               "health Check(%r): SERVING (%s)" % (svc, st))

    # 8. chat roles are the same set as over HTTP
    req = pb.GenerateRequest(model="tiny")
    msg = req.chat.messages.add()
    msg.role, msg.content = "wizard", "hello"
    req.sampling.max_tokens = 2
    c, _, _ = collect(stub, req)
    nc.tap(c == grpc.StatusCode.INVALID_ARGUMENT, "chat role 'wizard': INVALID_ARGUMENT (%s)" % c)

    # 8b. ids outside the vocabulary are refused wherever they appear
    req = request(pb, n=4)
    req.sampling.stop_token_ids.append(99999999)
    c, _, _ = collect(stub, req)
    nc.tap(c == grpc.StatusCode.INVALID_ARGUMENT,
           "a stop token id outside the vocabulary: INVALID_ARGUMENT (%s)" % c)
    try:
        stub.Tokenize(pb.TokenizeRequest(model="tiny", chat=pb.ChatMessages()), timeout=10)
        c = None
    except grpc.RpcError as e:
        c = e.code()
    nc.tap(c == grpc.StatusCode.INVALID_ARGUMENT,
           "Tokenize of a chat with no messages: INVALID_ARGUMENT, as Generate (%s)" % c)

    # 8d. tools: ChatMessages.tools, a call and its result are rendered by
    # the chat template; a call's arguments that are not JSON are refused
    chat = pb.ChatMessages(add_generation_prompt=True)
    m = chat.messages.add()
    m.role, m.content = "user", "What time is it?"
    plain = stub.Tokenize(pb.TokenizeRequest(model="tiny", chat=chat), timeout=10)
    t = chat.tools.add()
    t.name, t.description = "get_time", "The time now"
    t.parameters = '{"type": "object", "properties": {}}'
    a = chat.messages.add()
    a.role = "assistant"
    tc = a.tool_calls.add()
    tc.id, tc.name, tc.arguments = "call_1", "get_time", "{}"
    r = chat.messages.add()
    r.role, r.content, r.tool_call_id = "tool", "12:00", "call_1"
    tooled = stub.Tokenize(pb.TokenizeRequest(model="tiny", chat=chat), timeout=10)
    nc.tap(len(tooled.token_ids) > len(plain.token_ids) + 40 and
           list(tooled.token_ids[:3]) == list(plain.token_ids[:3]),
           "Tokenize renders tools, a call and its result (%d tokens, %d without)"
           % (len(tooled.token_ids), len(plain.token_ids)))
    tc.arguments = "{nope"
    try:
        stub.Tokenize(pb.TokenizeRequest(model="tiny", chat=chat), timeout=10)
        c = None
    except grpc.RpcError as e:
        c = e.code()
    nc.tap(c == grpc.StatusCode.INVALID_ARGUMENT,
           "a tool call whose arguments are not JSON: INVALID_ARGUMENT (%s)" % c)

    # 8c. a stop string over the limit is the client's mistake
    req = request(pb, n=4)
    req.sampling.stop.append("a" * 10000)
    c, _, _ = collect(stub, req)
    nc.tap(c == grpc.StatusCode.INVALID_ARGUMENT,
           "a 10000-byte stop string: INVALID_ARGUMENT (%s)" % c)

    # 9. a prompt over the context names both counts
    try:
        list(stub.Generate(request(pb, prompt="word " * 20000), timeout=30))
        detail = ""
    except grpc.RpcError as e:
        detail = e.details() or ""
    nc.tap("tokens" in detail and "context" in detail and "too large" != detail.strip(),
           "a prompt over the context says how many tokens against the context (%r)"
           % detail[:120])
    # 10. prompts go through the tokenizer thread: the same ids as the
    # loop's Tokenize, so the same tokens; chat too
    prompt = "The quick brown fox jumps over the lazy dog " * 6
    ids = stub.Tokenize(pb.TokenizeRequest(model="tiny", prompt=prompt,
                                           add_special_tokens=True), timeout=10).token_ids
    by_ids = pb.GenerateRequest(model="tiny", tokens=pb.TokenIds(ids=ids))
    by_ids.sampling.max_tokens, by_ids.sampling.ignore_eos = 12, True
    c1, t1, f1 = collect(stub, request(pb, prompt=prompt, n=12))
    c2, t2, f2 = collect(stub, by_ids)
    nc.tap(c1 is None and c2 is None and t1 == t2 and t1 and
           f1.usage.prompt_tokens == len(ids) == f2.usage.prompt_tokens,
           "a prompt tokenized on the worker thread: the tokens of Tokenize "
           "(%d prompt tokens, the same %d-byte text)" % (len(ids), len(t1)))
    # 10b. add_special_tokens false: the text's tokens alone, without the
    # BOS generation puts first
    plain_ids = stub.Tokenize(pb.TokenizeRequest(model="tiny", prompt=prompt),
                              timeout=10).token_ids
    nc.tap(len(ids) == len(plain_ids) + 1 and list(ids[1:]) == list(plain_ids),
           "Tokenize without add_special_tokens leaves out the BOS (%d ids, %d "
           "with it)" % (len(plain_ids), len(ids)))
    chat = pb.ChatMessages(add_generation_prompt=True)
    m = chat.messages.add()
    m.role, m.content = "user", prompt
    cids = stub.Tokenize(pb.TokenizeRequest(model="tiny", chat=chat), timeout=10).token_ids
    by_chat = pb.GenerateRequest(model="tiny", chat=chat)
    by_chat.sampling.max_tokens, by_chat.sampling.ignore_eos = 12, True
    by_cids = pb.GenerateRequest(model="tiny", tokens=pb.TokenIds(ids=cids))
    by_cids.sampling.max_tokens, by_cids.sampling.ignore_eos = 12, True
    c1, t1, _ = collect(stub, by_chat)
    c2, t2, _ = collect(stub, by_cids)
    nc.tap(c1 is None and c2 is None and t1 == t2 and t1,
           "a chat rendered and tokenized on the worker thread: the tokens of Tokenize")

    # 11. a call cancelled while its prompt waits behind long ones on the
    # one tokenizer thread: nothing starts, nothing leaks, the rest goes on
    big = "word " * 700000   # 3.5 MB over the context: a slow refusal
    bigs = []

    def big_one():
        bigs.append(collect(stub, request(pb, prompt=big))[0])

    def requests_ended():
        _, body = nc.http_get(rh, "/metrics")
        return sum(float(x.rsplit(" ", 1)[1]) for x in body.splitlines()
                   if x.startswith("baton_router_requests_total{"))
    ended0 = requests_ended()
    bts = nc.hold_tokenizer(rh, big_one, 3, bigs)
    call = stub.Generate(request(pb, n=LONG), timeout=60)
    waited = nc.tokenizer_more(rh, 3, bigs)
    call.cancel()
    try:
        for _ in call:
            pass
        code = None
    except grpc.RpcError as e:
        code = e.code()
    left = nc.tokenizer_idle(rh, bts)
    inflight = nc.gauge(rh, "baton_router_inflight_requests")
    ended = requests_ended() - ended0
    nc.tap(waited and code == grpc.StatusCode.CANCELLED and left == 0 and
           inflight == 0 and ended == 0 and
           bigs == [grpc.StatusCode.INVALID_ARGUMENT] * 3,
           "cancel while the prompt waits for the tokenizer thread: CANCELLED, "
           "no request started (it waited: %s; then %s there, %s in flight, %s "
           "ended; the long ones %s)" % (waited, left, inflight, ended, bigs))
    alive_and_clean("at the end")

    # 10. a client going away is normal: no daemon logs a warning or an
    # error for the calls cancelled or past their deadline above
    noisy = []
    for name in ("router", "p1", "d1"):
        with open(os.path.join(tmp, name + ".err")) as f:
            noisy += ["%s: %s" % (name, line.strip()) for line in f
                      if re.search(r"Z (warn|error) ", line) and
                      re.search(r"cancel|deadline", line, re.I)]
    nc.tap(not noisy, "cancels and deadlines are logged at info, never as a "
           "warning or an error (%d lines)" % len(noisy), *noisy[:4])
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
