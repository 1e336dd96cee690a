#!/usr/bin/python3
"""The router's HTTP front door against real and hostile clients (issue 15),
on a router + 1 prefill + 1 decode cluster with small HTTP limits set by
flag, spoken to over raw sockets and http.client:

- a non-streamed request whose client leaves is cancelled (the decode
  node's blocks freed), not generated to max_tokens;
- errors known before a stream's first token are real statuses with
  OpenAI's error body (404, 400 with both token counts, 429/503 with
  Retry-After), never a 200 with an in-band error;
- a tiny queue: concurrent streams each complete or get a real 429/503;
- protocol errors (bad request line, huge body or head) are JSON;
- slow loris: connections dripping a header byte at a time are closed
  after the header timeout while normal traffic goes on; the idle
  timeout; the connection cap (503 + Retry-After);
- HTTP/1.0 keep-alive streaming: no Content-Length, ends at the close;
- null fields, OpenAI's ignored fields, /v1/models/{id}, `created`;
- a client that leaves while its prompt waits for the tokenizer thread
  (--threads 1) starts no request.
After each case that drops a client, a normal request still succeeds.

usage: front_http.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import http.client
import json
import os
import re
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402  (tap, setup, start, gauge, ...)

BUILD = nc.BUILD
RH = 0   # the router's HTTP port
DH = 0   # the decode node's HTTP port
TMP = ""


def raw(data, timeout=30, until_close=True):
    """Sends bytes on a new connection; returns what came back (until the
    server closes, or the first read when until_close is False)."""
    s = socket.create_connection(("127.0.0.1", RH), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if not until_close:
                break
    except OSError:
        pass
    s.close()
    return out.decode("utf-8", "replace")


def post(path, body, headers=None, version="1.1"):
    """A raw POST (Connection: close): (status, headers text, body text)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = ("POST %s HTTP/%s\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nConnection: close\r\n" % (path, version, len(data)))
    for k, v in (headers or {}).items():
        head += "%s: %s\r\n" % (k, v)
    return split(raw(head.encode() + b"\r\n" + data))


def split(resp):
    m = re.match(r"HTTP/1\.[01] (\d+)", resp)
    head, _, body = resp.partition("\r\n\r\n")
    return (int(m.group(1)) if m else 0), head, body


def is_openai_error(body):
    try:
        e = json.loads(body)["error"]
        return all(k in e for k in ("message", "type", "param", "code"))
    except (ValueError, KeyError, TypeError):
        return False


def normal_ok(what):
    """A plain completion still works."""
    st, _, body = post("/v1/completions", {"model": "tiny", "prompt": "hello",
                                           "max_tokens": 4, "temperature": 0})
    nc.tap(st == 200 and '"text_completion"' in body,
           "the cluster still serves after %s (%d)" % (what, st), body[:200])


def router_log():
    with open(os.path.join(TMP, "router.err")) as f:
        return f.read()


def wait_blocks_free(secs=10):
    t0 = time.time()
    while time.time() - t0 < secs:
        if nc.gauge(DH, "baton_node_kv_used_blocks") == 0:
            return True
        time.sleep(0.05)
    return False


def test_nonstream_disconnect():
    # the client sends a long non-streamed request and leaves at 0.3 s
    body = json.dumps({"model": "tiny", "prompt": "a long story", "max_tokens": 900,
                       "ignore_eos": True}).encode()
    s = socket.create_connection(("127.0.0.1", RH), timeout=30)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: fh-leave-1\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    time.sleep(0.3)
    s.close()
    t0 = time.time()
    log = ""
    while time.time() - t0 < 20:
        log = router_log()
        if re.search(r"fh-leave-1.*(cancelled|done:)", log):
            break
        time.sleep(0.05)
    lines = [x for x in log.splitlines() if "fh-leave-1" in x]
    done = [x for x in lines if "done:" in x]
    nc.tap(any("cancelled" in x for x in lines) and
           not any("generated 900" in x for x in done),
           "a non-streamed request whose client left at 0.3 s is cancelled",
           *lines[-4:])
    nc.tap(wait_blocks_free(), "... and the decode node's blocks are freed (%s used)"
           % nc.gauge(DH, "baton_node_kv_used_blocks"))
    normal_ok("a non-streamed client left")


def test_stream_disconnect():
    # a stream whose client leaves after its first event
    body = json.dumps({"model": "tiny", "prompt": "a long story", "max_tokens": 900,
                       "ignore_eos": True, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", RH), timeout=30)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: fh-leave-2\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    got = b""
    while b"data: {" not in got:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    t0 = time.time()
    lines = []
    while time.time() - t0 < 20:
        lines = [x for x in router_log().splitlines() if "fh-leave-2" in x]
        if any("cancelled" in x or "done:" in x for x in lines):
            break
        time.sleep(0.05)
    nc.tap(b"HTTP/1.1 200" in got and any("cancelled" in x for x in lines),
           "a stream whose client left after its first event is cancelled", *lines[-3:])
    nc.tap(wait_blocks_free(), "... and the decode node's blocks are freed")
    normal_ok("a streaming client left")


def test_stream_admission_errors():
    for kind, path, extra in (
            ("completions", "/v1/completions", {"prompt": "hi"}),
            ("chat", "/v1/chat/completions",
             {"messages": [{"role": "user", "content": "hi"}]})):
        body = dict(extra, model="nope", stream=True)
        st, head, text = post(path, body)
        nc.tap(st == 404 and "text/event-stream" not in head and
               is_openai_error(text) and "data:" not in text,
               "%s stream, unknown model: 404 with the error body, no stream (%d)"
               % (kind, st), head, text[:300])
    # a prompt over the context (the tiny model's is small)
    _, _, models = post_get("/v1/models")
    ctx = json.loads(models)["data"][0]["max_model_len"]
    long_prompt = " ".join("w%d" % i for i in range(ctx * 2))
    st, head, text = post("/v1/completions", {"model": "tiny", "prompt": long_prompt,
                                              "stream": True})
    msg = json.loads(text)["error"]["message"] if is_openai_error(text) else ""
    nums = [int(x) for x in re.findall(r"\d+", msg)]
    nc.tap(st == 400 and "text/event-stream" not in head and len(nums) >= 2 and
           nums[0] > ctx and ctx in nums,
           "stream, prompt over the context: 400 naming both token counts (%d: %s)"
           % (st, msg))
    st, head, text = post("/v1/chat/completions", {
        "model": "tiny", "messages": [{"role": "user", "content": long_prompt}],
        "stream": True})
    nc.tap(st == 400 and "tokens" in text and "text/event-stream" not in head,
           "chat stream, prompt over the context: 400 (%d)" % st, text[:300])


def post_get(path):
    return split(raw(("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                      % path).encode()))


def stream_once(results, i):
    """One streamed completion over a raw socket: (status, head, body)."""
    body = {"model": "tiny", "prompt": "tell me a story number %d" % i,
            "max_tokens": 200, "ignore_eos": True, "stream": True}
    results[i] = post("/v1/completions", body)


def test_tiny_queue():
    # 12 concurrent streams of 200 tokens on a decode node of 64 blocks of
    # 16 tokens: some cannot be placed; the router's queue holds 1
    n = 12
    results = [None] * n
    ts = [threading.Thread(target=stream_once, args=(results, i)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    ok = 0
    refused = 0
    bad = []
    print("# statuses: %s" % sorted((r or (0,))[0] for r in results), flush=True)
    for st, head, body in (r or (0, "", "") for r in results):
        if st == 200 and "data: [DONE]" in body and '"error"' not in body:
            ok += 1
        elif (st in (429, 503) and re.search(r"(?im)^Retry-After: \d+", head) and
              is_openai_error(body) and "data:" not in body):
            refused += 1
        else:
            bad.append("%d %s %s" % (st, head.replace("\r\n", " | "), body[:300]))
    nc.tap(not bad and ok >= 1 and ok + refused == n,
           "tiny queue: each stream completes (%d) or gets a real 429/503 with "
           "Retry-After (%d), never a 200 with an in-band error" % (ok, refused),
           *bad[:4])
    nc.tap(wait_blocks_free(), "... every block freed afterwards")
    normal_ok("a burst on a tiny queue")


def test_protocol_errors():
    st, head, body = split(raw(b"GARBAGE\r\n\r\n"))
    nc.tap(st == 400 and is_openai_error(body) and "<HTML" not in body.upper(),
           "a bad request line: 400 in OpenAI's error shape (%d)" % st, body[:200])
    big = b"x" * (300 * 1024)   # --max-body 256K
    st, head, body = post("/v1/completions", big)
    nc.tap(st == 413 and is_openai_error(body) and "<HTML" not in body.upper(),
           "a body over --max-body: 413 in OpenAI's error shape (%d)" % st, body[:200])
    st, head, body = split(raw(b"GET /v1/models HTTP/1.1\r\nX: " + b"a" * 70000 +
                               b"\r\n\r\n"))
    nc.tap(st == 431 and is_openai_error(body),
           "a head over 64 KiB: 431 in OpenAI's error shape (%d)" % st, body[:200])
    st, head, body = post("/v1/completions", b'{"model":"tiny","prompt":"a\\u0000b"}')
    nc.tap(st == 400 and is_openai_error(body) and "JSON_ALLOW_NUL" not in body and
           "NUL" in body, "a NUL character: a plain 400 (%s)" % body.strip())
    st, head, body = split(raw(b"DELETE /v1/completions HTTP/1.1\r\nConnection: close"
                               b"\r\n\r\n"))
    nc.tap(st == 405 and is_openai_error(body) and "Allow: POST" in head,
           "a wrong method: 405 with Allow, in OpenAI's error shape (%d)" % st)
    normal_ok("protocol errors")


def test_slow_loris():
    # 20 connections drip one header byte every 0.3 s; the header
    # timeout (1 s) closes them all, while normal requests go on
    socks = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", RH), timeout=10)
        socks.append(s)
    t0 = time.time()
    closed = set()
    got_408 = 0
    served = 0
    line = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    i = 0
    while len(closed) < len(socks) and time.time() - t0 < 15:
        for k, s in enumerate(socks):
            if k in closed:
                continue
            try:
                s.sendall(line[i % len(line):i % len(line) + 1])
            except OSError:
                closed.add(k)
                continue
            s.setblocking(False)
            try:
                data = s.recv(4096)
                if data.startswith(b"HTTP/1.1 408"):
                    got_408 += 1
                closed.add(k)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(k)
            s.setblocking(True)
        i += 1
        st, _, _ = post_get("/v1/models")
        served += st == 200
        time.sleep(0.3)
    took = time.time() - t0
    for s in socks:
        s.close()
    nc.tap(len(closed) == len(socks) and took < 10 and got_408 >= 1,
           "20 slow-loris connections are closed by the header timeout "
           "(%d closed, %d with a 408, %.1f s)" % (len(closed), got_408, took))
    nc.tap(served >= i, "normal requests were served meanwhile (%d of %d)" % (served, i))
    timeouts = nc.gauge(RH, "baton_http_timeouts_total")
    nc.tap(timeouts is not None and timeouts >= 20,
           "baton_http_timeouts_total counts them (%s)" % timeouts)
    normal_ok("a slow-loris attack")
    # idle keep-alive: closed after --http-idle-timeout (2 s)
    s = socket.create_connection(("127.0.0.1", RH), timeout=15)
    s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
    t0 = time.time()
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except OSError:
        pass    # never closed: the recv timed out
    took = time.time() - t0
    s.close()
    nc.tap(data.startswith(b"HTTP/1.1 200") and 1.5 <= took < 10,
           "an idle keep-alive connection is closed after the idle timeout "
           "(%.1f s)" % took)


def test_connection_cap():
    # --http-max-connections 25: the 26th gets 503 + Retry-After at once
    socks = [socket.create_connection(("127.0.0.1", RH), timeout=10)
             for _ in range(25)]
    time.sleep(0.3)
    t0 = time.time()
    st, head, body = post_get("/v1/models")
    took = time.time() - t0
    nc.tap(st == 503 and re.search(r"(?im)^Retry-After: \d+", head) and
           is_openai_error(body) and took < 2,
           "over --http-max-connections: 503 with Retry-After and a JSON body "
           "at once (%d, %.2f s)" % (st, took), head, body[:200])
    # one closes: /metrics itself takes its place
    socks.pop().close()
    opened = None
    for _ in range(50):
        opened = nc.gauge(RH, "baton_http_connections")
        if opened is not None:
            break
        time.sleep(0.1)
    refused = nc.gauge(RH, "baton_http_refused_total")
    for s in socks:
        s.close()
    nc.tap(refused is not None and refused >= 1 and opened == 25,
           "baton_http_refused_total (%s) and baton_http_connections (%s)"
           % (refused, opened))
    st = 0
    for _ in range(50):
        st, _, _ = post_get("/v1/models")
        if st == 200:
            break
        time.sleep(0.1)
    nc.tap(st == 200, "room again once they close (%d)" % st)


def test_http10_stream():
    body = json.dumps({"model": "tiny", "prompt": "hello", "max_tokens": 5,
                       "stream": True}).encode()
    resp = raw(b"POST /v1/completions HTTP/1.0\r\nConnection: keep-alive\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % len(body) + body, timeout=30)
    st, head, text = split(resp)
    nc.tap(st == 200 and "Content-Length" not in head and
           "Transfer-Encoding" not in head and
           re.search(r"(?im)^Connection: close", head) and
           text.startswith("data: {") and text.endswith("data: [DONE]\n\n"),
           "HTTP/1.0 keep-alive stream: no Content-Length, the body ends at "
           "the close (%d)" % st, head, text[:200])


def test_openai_conventions():
    nulls = {"model": "tiny", "prompt": "hello", "max_tokens": 3}
    for k in ("temperature", "top_p", "seed", "n", "logprobs", "stream",
              "stream_options", "presence_penalty", "frequency_penalty", "echo",
              "best_of", "stop", "user", "suffix", "logit_bias"):
        nulls[k] = None
    st, _, body = post("/v1/completions", nulls)
    nc.tap(st == 200, "completions with null for every optional field: 200 (%d)"
           % st, body[:300])
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 3, "max_completion_tokens": 2, "store": False,
            "metadata": {"k": "v"}, "service_tier": "auto",
            "parallel_tool_calls": True, "modalities": ["text"], "user": "u",
            "response_format": {"type": "text"}, "temperature": None,
            "top_logprobs": None, "seed": None, "tools": None}
    st, _, body = post("/v1/chat/completions", chat)
    try:
        js = json.loads(body)
        usage_ok = js["usage"]["completion_tokens"] <= 2
        created = js["created"]
    except (ValueError, KeyError):
        usage_ok, created = False, 0
    nc.tap(st == 200 and usage_ok,
           "chat with OpenAI's ignored fields and nulls: 200, max_completion_tokens "
           "wins over max_tokens (%d)" % st, body[:300])
    nc.tap(abs(created - time.time()) < 600,
           "`created` is the Unix time (%s)" % created)
    st, _, body = post("/v1/chat/completions", dict(chat, response_format={
        "type": "json_schema", "json_schema": {"name": "d", "schema": {
            "type": "string", "format": "date-time"}}}))
    nc.tap(st == 400 and is_openai_error(body) and
           json.loads(body)["error"]["param"] == "response_format" and
           "'format'" in json.loads(body)["error"]["message"],
           "response_format with a schema keyword Baton cannot honour: 400 "
           "naming it, with param (%d)" % st, body[:300])
    st, _, body = post("/v1/chat/completions", dict(chat, frobnicate=1))
    nc.tap(st == 400 and json.loads(body)["error"]["param"] == "frobnicate",
           "an unknown field: 400 naming it in param (%d)" % st, body[:300])
    st, _, body = post_get("/v1/models/tiny")
    js = json.loads(body) if st == 200 else {}
    nc.tap(st == 200 and js.get("id") == "tiny" and js.get("object") == "model" and
           abs(js.get("created", 0) - time.time()) < 3600,
           "/v1/models/tiny: the model, `created` set (%d %s)" % (st, body.strip()))
    st, _, body = post_get("/v1/models/nope")
    nc.tap(st == 404 and is_openai_error(body),
           "/v1/models/nope: 404 in OpenAI's error shape (%d)" % st, body[:200])


def test_leave_while_tokenizing():
    # long prompts over the context hold the one tokenizer thread; a
    # stream's client leaves while its prompt waits behind them
    big = json.dumps({"model": "tiny", "prompt": "word " * 50000,
                      "max_tokens": 4}).encode()
    codes = []

    def big_one():
        codes.append(post("/v1/completions", big)[0])
    bts = nc.hold_tokenizer(RH, big_one, 12, codes)
    body = json.dumps({"model": "tiny", "prompt": "hello", "max_tokens": 900,
                       "ignore_eos": True, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", RH), timeout=30)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nX-Request-Id: fh-pool-1\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % len(body) + body)
    waited = nc.tokenizer_more(RH, 12, codes)
    s.close()
    left = nc.tokenizer_idle(RH, bts)
    nc.tap(waited and codes == [400] * 12 and left == 0 and
           not re.search(r"fh-pool-1.*admitted", router_log()) and
           nc.gauge(RH, "baton_router_inflight_requests") == 0,
           "a client leaving while its prompt waits for the tokenizer thread: "
           "no request starts (it waited: %s; then %s there; the long ones %s)"
           % (waited, left, codes))
    normal_ok("a client left while its prompt waited")


def main():
    global RH, DH, TMP
    tmp, model, env = nc.setup("baton-front-http-")
    TMP = tmp
    _, rg, RH = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms",
                                    "--max-queue", "1", "--queue-timeout", "2s",
                                    "--max-body", "256K",
                                    "--http-header-timeout", "1s",
                                    "--http-idle-timeout", "2s",
                                    "--http-max-connections", "25",
                                    "--threads", "1"], env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1"]
    nc.start("prefill", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
             + ["--node-id", "p1"], env, tmp)
    _, _, DH = nc.start("decode", [os.path.join(BUILD, "decode_node/baton-decode")]
                        + common + ["--node-id", "d1", "--kv-blocks", "64"], env, tmp)
    nc.tap(nc.wait_ready(RH), "router ready with a prefill and a decode node")
    test_nonstream_disconnect()
    test_stream_disconnect()
    test_stream_admission_errors()
    test_tiny_queue()
    test_protocol_errors()
    test_http10_stream()
    test_openai_conventions()
    test_slow_loris()
    test_connection_cap()
    test_leave_while_tokenizing()
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
