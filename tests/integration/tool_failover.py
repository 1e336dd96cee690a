#!/usr/bin/python3
"""A forced tool call through the HTTP chat API on a real cluster (router,
a prefill node, two decode nodes): a streamed call with tool_choice
"required" assembles into a call whose arguments validate; the same
request with its decode node killed mid-way continues on the other one in
the same grammar state and yields the identical call; the whole
(non-streamed) response is the same call; an unknown function in
tool_choice is a 400 naming the field.

usage: tool_failover.py   (BATON_BUILD_ROOT = the build folder)
"""
import http.client
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402
from cluster_failover import Cluster, kill, http_post  # noqa: E402

PARAMS = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 30},
        "notes": {"type": "array", "items": {"type": "string", "maxLength": 20},
                  "minItems": 8, "maxItems": 10},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
        "done": {"type": "boolean"},
    },
    "required": ["title", "notes", "count", "done"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "save_notes", "parameters": PARAMS}},
    {"type": "function", "function": {"name": "get_time",
                                      "parameters": {"type": "object", "properties": {}}}},
]


def valid(name, args):
    """(ok, why) for a call to save_notes."""
    if name != "save_notes":
        return False, "called %r" % name
    try:
        v = json.loads(args)
    except ValueError as e:
        return False, "arguments do not parse: %s" % e
    if not isinstance(v, dict) or set(v) != set(PARAMS["required"]):
        return False, "not the declared properties"
    notes = v["notes"]
    ok = (isinstance(v["title"], str) and len(v["title"]) <= 30 and
          isinstance(notes, list) and 8 <= len(notes) <= 10 and
          all(isinstance(s, str) and len(s) <= 20 for s in notes) and
          isinstance(v["count"], int) and not isinstance(v["count"], bool) and
          0 <= v["count"] <= 999 and isinstance(v["done"], bool))
    return ok, "valid" if ok else "a value breaks its constraint"


def body(stream, seed=31):
    return json.dumps({
        "model": "tiny", "messages": [{"role": "user", "content": "Save my notes."}],
        "tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "save_notes"}},
        # the prompt with the tools is ~1300 tokens of the 2048
        "max_tokens": 700, "temperature": 0.9, "seed": seed, "stream": stream,
        "logprobs": True})


class Stream(threading.Thread):
    """A streamed chat request read chunk by chunk: the call assembled."""

    def __init__(self, port, request_id):
        super().__init__(daemon=True)
        self.port, self.rid = port, request_id
        self.tokens, self.name, self.args, self.ids = [], None, "", set()
        self.finish, self.error, self.raw = None, None, []
        self.start()

    def run(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=180)
            c.request("POST", "/v1/chat/completions", body(True),
                      {"content-type": "application/json", "X-Request-Id": self.rid})
            r = c.getresponse()
            if r.status != 200:
                self.error = "status %d: %s" % (r.status, r.read()[:300])
                return
            while True:
                line = r.readline()
                if len(self.raw) < 4:
                    self.raw.append(line[:300])
                if not line or line.startswith(b"data: [DONE]"):
                    break
                if not line.startswith(b"data: {"):
                    continue
                ch = json.loads(line[6:])["choices"][0]
                lp = ch.get("logprobs") or {}
                self.tokens += [t["token"] for t in lp.get("content") or []]
                for tc in ch["delta"].get("tool_calls") or []:
                    if tc["index"] != 0:
                        self.error = "a second call"
                    if "id" in tc:
                        self.ids.add(tc["id"])
                    fn = tc.get("function", {})
                    if "name" in fn:
                        self.name = fn["name"]
                    self.args += fn.get("arguments", "")
                if ch.get("finish_reason"):
                    self.finish = ch["finish_reason"]
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)

    def wait_tokens(self, n, secs=60):
        deadline = time.time() + secs
        while len(self.tokens) < n and self.is_alive() and time.time() < deadline:
            time.sleep(0.002)
        return len(self.tokens) >= n


def main():
    tmp, model, env = nc.setup("baton-tools-")
    cl = Cluster(tmp, env, model)
    cl.router()
    cl.node("prefill", "p1")
    for nid in ("d1", "d2"):
        cl.node("decode", nid)
    nc.tap(cl.nodes_registered(3), "router sees 1 prefill and 2 decode nodes")

    # 1. undisturbed: one call, streamed name first, arguments that validate
    ref = Stream(cl.rh, "tc-ref")
    ref.join(180)
    ok, why = valid(ref.name, ref.args)
    nc.tap(ref.finish == "tool_calls" and ok and len(ref.ids) == 1 and ref.error is None,
           "forced call streamed: %d tokens, %s, finish %s" % (len(ref.tokens), why, ref.finish),
           ref.error, ref.args[:300], ref.raw)

    # 2. the decode node killed mid-way: the same call
    s = Stream(cl.rh, "tc-fo")
    got = s.wait_tokens(20)
    _, d_id = cl.pair_of("tc-fo")
    before = len(s.tokens)
    if d_id in cl.nodes:
        kill(cl, d_id)
    s.join(180)
    ok, why = valid(s.name, s.args)
    same = s.tokens == ref.tokens and s.name == ref.name and s.args == ref.args
    nc.tap(got and before < len(ref.tokens) and s.finish == "tool_calls" and same and ok,
           "decode node %s killed after %d of %d tokens: %s, %s (%s)"
           % (d_id, before, len(ref.tokens), "identical call" if same else "DIFFERENT",
              why, s.error or "ok"), s.args[:300])

    # 3. the whole response is the same call
    st, text = http_post(cl.rh, "/v1/chat/completions", body(False))
    msg = json.loads(text)["choices"][0] if st == 200 else {}
    calls = msg.get("message", {}).get("tool_calls") or [{}]
    fn = calls[0].get("function", {})
    nc.tap(st == 200 and msg.get("finish_reason") == "tool_calls" and
           msg["message"].get("content") is None and
           fn.get("name") == ref.name and fn.get("arguments") == ref.args,
           "the whole response is the streamed call", st, text[:300],
           "streamed: %s(%s)" % (ref.name, ref.args), "whole: %s(%s)"
           % (fn.get("name"), fn.get("arguments")))

    # 4. an unknown function: 400 naming tool_choice
    bad = json.loads(body(False))
    bad["tool_choice"] = {"type": "function", "function": {"name": "nope"}}
    st, text = http_post(cl.rh, "/v1/chat/completions", json.dumps(bad))
    nc.tap(st == 400 and json.loads(text)["error"].get("param") == "tool_choice",
           "unknown function in tool_choice -> 400 (%s)" % text[:200])
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
