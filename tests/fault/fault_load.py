"""The fault matrix's load: a seeded pool of requests (gRPC and HTTP,
completions and chat, streamed and whole, greedy and seeded sampling,
prompts sharing prefixes) and the clients that run them and classify each
outcome:

  done       the request completed (finish "length", max_tokens tokens)
  error      a clear error: a gRPC status or a final ERROR message, an
             HTTP error status with a JSON error, or an SSE error event
  cancelled  the client cancelled it on purpose after some tokens
  deadline   its gRPC deadline fired (the client asked for one)
  dropped    the connection ended with no error and no end (no final
             message, no [DONE]): allowed only when the router itself died
  hang       nothing within the client's generous timeout

`judge` then holds each outcome against the undisturbed reference: a
`done` must be identical, every other outcome's partial output must be a
prefix of it (no token lost, repeated or changed before the end)."""
import http.client
import json
import random
import socket
import threading
import time

FINISH_LENGTH, FINISH_ERROR = 2, 4   # baton.v1.FinishReason
HANG_S = 90          # a request silent this long hangs (the machine is slow)
WORDS = ("alpha beta gamma delta river stone cloud paper lamp garden copper "
         "window orange silent market winter engine planet violet harbor").split()


def make_pool(seed, n):
    """n request specs from `seed`: three shared prompt prefixes, each
    request a prefix plus its own suffix."""
    rnd = random.Random(seed)
    prefixes = [[rnd.randrange(100, 4000) for _ in range(rnd.randrange(20, 70))]
                for _ in range(3)]
    systems = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(10, 30)))
               for _ in range(3)]
    pool = []
    for i in range(n):
        k = rnd.randrange(3)
        # the first a gRPC one: the reference is checked against baton-run
        spec = {"id": i, "api": rnd.choice(["grpc", "grpc", "http", "chat"])
                if i else "grpc",
                "stream": rnd.random() < 0.6,
                "max_tokens": rnd.randrange(8, 48),
                "temperature": rnd.choice([0.0, 0.8]),
                "seed": rnd.randrange(1, 1 << 30)}
        if spec["api"] == "chat":
            spec["messages"] = [
                {"role": "system", "content": systems[k]},
                {"role": "user", "content": " ".join(
                    rnd.choice(WORDS) for _ in range(rnd.randrange(1, 8)))}]
        else:
            spec["ids"] = prefixes[k] + [rnd.randrange(100, 4000)
                                         for _ in range(rnd.randrange(1, 24))]
        if spec["api"] == "grpc":
            spec["stream"] = True    # Generate always streams
        pool.append(spec)
    return pool


def vary(rnd, spec):
    """A trial's use of a pool request: sometimes cancelled after a few
    tokens, sometimes (gRPC) with a deadline that may fire."""
    run = dict(spec, cancel_after=None, deadline=None)
    x = rnd.random()
    if x < 0.15 and spec["stream"]:
        run["cancel_after"] = rnd.randrange(1, spec["max_tokens"])
    elif x < 0.30 and spec["api"] == "grpc":
        run["deadline"] = rnd.uniform(0.2, 3.0)
    return run


class Grpc:
    """baton.v1.Generate stubs (python3-grpcio) for one router address."""

    def __init__(self, pb, pb_grpc, port, host="127.0.0.1"):
        import grpc
        self.grpc = grpc
        self.pb = pb
        self.chan = grpc.insecure_channel("%s:%d" % (host, port))
        self.stub = pb_grpc.GenerateStub(self.chan)

    def close(self):
        self.chan.close()

    def run(self, r):
        grpc, pb = self.grpc, self.pb
        req = pb.GenerateRequest(model="tiny")
        req.tokens.ids.extend(r["ids"])
        s = req.sampling
        s.max_tokens = r["max_tokens"]
        s.temperature = r["temperature"]
        s.seed = r["seed"]
        s.ignore_eos = True
        toks, final = [], None
        call = self.stub.Generate(req, timeout=r["deadline"] or HANG_S)
        try:
            for m in call:
                toks += list(m.token_ids)
                if m.HasField("final"):
                    final = m.final
                elif r["cancel_after"] and len(toks) >= r["cancel_after"]:
                    call.cancel()
                    return "cancelled", toks, "after %d tokens" % len(toks)
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return ("deadline" if r["deadline"] else "hang"), toks, e.details()
            if code == grpc.StatusCode.UNKNOWN and not e.details():
                return "dropped", toks, "UNKNOWN without a message"
            return "error", toks, "%s: %s" % (code.name, e.details())
        if final is None:
            return "dropped", toks, "stream ended without a final message"
        if final.finish_reason == FINISH_ERROR:
            return "error", toks, "final ERROR: " + final.error
        if final.finish_reason != FINISH_LENGTH or \
                final.usage.completion_tokens != len(toks) or len(toks) != r["max_tokens"]:
            return "done", toks, "finish %d, usage %d" % (
                final.finish_reason, final.usage.completion_tokens)
        return "done", toks, ""


def http_run(port, r, host="127.0.0.1"):
    """One HTTP completion or chat completion, whole or streamed."""
    chat = r["api"] == "chat"
    body = {"model": "tiny", "max_tokens": r["max_tokens"],
            "temperature": r["temperature"], "seed": r["seed"],
            "ignore_eos": True, "stream": r["stream"]}
    if chat:
        body["messages"] = r["messages"]
    else:
        body["prompt"] = r["ids"]
    path = "/v1/chat/completions" if chat else "/v1/completions"
    c = http.client.HTTPConnection(host, port, timeout=HANG_S)
    text = ""
    try:
        c.request("POST", path, json.dumps(body),
                  {"content-type": "application/json"})
        resp = c.getresponse()
        if resp.status != 200 or not r["stream"]:
            data = resp.read().decode()
            try:
                js = json.loads(data)
            except ValueError:
                return "dropped", "", "HTTP %d, not JSON: %r" % (resp.status, data[:80])
            if resp.status != 200:
                if isinstance(js.get("error"), dict) and js["error"].get("message"):
                    return "error", "", "HTTP %d: %s" % (resp.status, js["error"]["message"])
                return "dropped", "", "HTTP %d without an error message" % resp.status
            ch = js["choices"][0]
            text = ch["message"]["content"] if chat else ch["text"]
            return "done", text, _finish_note(ch.get("finish_reason"),
                                              js["usage"]["completion_tokens"], r)
        finish, n_chunks, usage = None, 0, None
        while True:
            line = resp.fp.readline()
            if not line:
                return "dropped", text, "stream ended without [DONE]"
            line = line.decode().rstrip("\r\n")
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            js = json.loads(line[6:])
            if "error" in js:
                return "error", text, "SSE error: %s" % js["error"].get("message")
            if js.get("usage"):
                usage = js["usage"]["completion_tokens"]
            if not js.get("choices"):
                continue
            ch = js["choices"][0]
            piece = (ch.get("delta") or {}).get("content") if chat else ch.get("text")
            if piece:
                text += piece
                n_chunks += 1
            finish = ch.get("finish_reason") or finish
            if r["cancel_after"] and n_chunks >= r["cancel_after"] and not finish:
                return "cancelled", text, "after %d chunks" % n_chunks
        return "done", text, _finish_note(finish, usage, r)
    except socket.timeout:
        return "hang", text, "no answer in %ds" % HANG_S
    except (OSError, http.client.HTTPException) as e:
        return "dropped", text, "%s: %s" % (type(e).__name__, e)
    finally:
        c.close()


def _finish_note(finish, usage, r):
    """'' when a completed response says it ran to max_tokens, else why not."""
    if finish != "length" or (usage is not None and usage != r["max_tokens"]):
        return "finish %s, completion_tokens %s of %d" % (finish, usage, r["max_tokens"])
    return ""


def run_load(grpc_client, http_port, runs, offsets, host="127.0.0.1"):
    """Starts each run at its offset (seconds) in a thread; returns the
    threads and the list their outcomes land in (by index). `host`: the
    router's HTTP address."""
    out = [None] * len(runs)

    def one(i):
        time.sleep(offsets[i])
        r = runs[i]
        try:
            if r["api"] == "grpc":
                out[i] = grpc_client.run(r)
            else:
                out[i] = http_run(http_port, r, host)
        except Exception as e:   # noqa: BLE001  a client bug is a violation too
            out[i] = ("client-bug", None, "%s: %s" % (type(e).__name__, e))

    threads = [threading.Thread(target=one, args=(i,), daemon=True)
               for i in range(len(runs))]
    for t in threads:
        t.start()
    return threads, out


def judge(outcome, r, ref, router_died):
    """None when the outcome keeps the promise, else the violation."""
    kind, got, note = outcome
    if kind == "client-bug":
        return "client failed: " + note
    if kind == "hang":
        return "hang: " + note
    if kind == "dropped" and not router_died:
        return "no clear error (%s) though the router stayed up" % note
    if kind == "done":
        if note:
            return "completed as success but " + note
        if got != ref:
            return "completed with other output than the reference (%s)" % diff(got, ref)
        return None
    if got and got != ref[:len(got)]:
        return "%s after output that is not a prefix of the reference (%s)" % (
            kind, diff(got, ref))
    return None


def diff(got, ref):
    n = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b),
             min(len(got), len(ref)))
    return "len %d vs %d, first difference at %d: %r vs %r" % (
        len(got), len(ref), n, got[n:n + 4], ref[n:n + 4])
