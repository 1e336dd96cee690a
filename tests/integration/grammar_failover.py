#!/usr/bin/python3
"""Structured output through the gRPC API on a real cluster (router, a
prefill node, two decode nodes): a constrained request completes with a
document that parses and validates; the same request with the decode node
killed mid-way continues on the other one with the same grammar state and
yields the identical, valid document, as does the request batched among
other constrained ones; a bad schema is INVALID_ARGUMENT naming the
keyword, as is a format with ignore_eos.

usage: grammar_failover.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402
from cluster_failover import Cluster, kill, grpc_generate  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 30},
        "notes": {"type": "array", "items": {"type": "string", "maxLength": 30},
                  "minItems": 16, "maxItems": 20},
        "count": {"type": "integer", "minimum": 0, "maximum": 999},
        "done": {"type": "boolean"},
    },
    "required": ["title", "notes", "count", "done"],
    "additionalProperties": False,
}


def valid(doc):
    """The schema above, checked by hand: (ok, why)."""
    try:
        v = json.loads(doc)
    except ValueError as e:
        return False, "does not parse: %s" % e
    if not isinstance(v, dict) or set(v) - set(SCHEMA["properties"]):
        return False, "not an object of the declared properties"
    if any(k not in v for k in SCHEMA["required"]):
        return False, "a required property is missing"
    notes = v["notes"]
    ok = (isinstance(v["title"], str) and len(v["title"]) <= 30 and
          isinstance(notes, list) and 16 <= len(notes) <= 20 and
          all(isinstance(s, str) and len(s) <= 30 for s in notes) and
          isinstance(v["count"], int) and not isinstance(v["count"], bool) and
          0 <= v["count"] <= 999 and isinstance(v["done"], bool))
    return ok, "valid" if ok else "a value breaks its constraint"


class Stream(threading.Thread):
    """A constrained gRPC Generate read on a thread: ids and text."""

    def __init__(self, stubs, target, request_id, schema_text, seed):
        super().__init__(daemon=True)
        common, pb, self.pb_grpc = stubs
        self.req = pb.GenerateRequest(model="tiny", prompt="Write the record:",
                                      request_id=request_id)
        self.req.sampling.max_tokens = 1500
        self.req.sampling.temperature = 0.9
        self.req.sampling.seed = seed
        rf = self.req.sampling.response_format
        rf.type = common.ResponseFormat.TYPE_JSON_SCHEMA
        rf.schema = schema_text
        rf.name = "record"
        self.target = target
        self.ids, self.text, self.final, self.error = [], "", None, None
        self.start()

    def run(self):
        import grpc
        try:
            with grpc.insecure_channel(self.target) as ch:
                for msg in self.pb_grpc.GenerateStub(ch).Generate(self.req, timeout=180):
                    self.ids.extend(msg.token_ids)
                    self.text += msg.text
                    if msg.HasField("final"):
                        self.final = msg.final
        except grpc.RpcError as e:
            self.error = "%s: %s" % (e.code().name, e.details())

    def wait_tokens(self, n, secs=60):
        deadline = time.time() + secs
        while len(self.ids) < n and self.is_alive() and time.time() < deadline:
            time.sleep(0.002)
        return len(self.ids) >= n


def main():
    import grpc
    tmp, model, env = nc.setup("baton-grammar-")
    stubs_dir = os.path.join(tmp, "stubs")
    os.mkdir(stubs_dir)
    stubs = grpc_generate.load_stubs(stubs_dir)
    common, pb, pb_grpc = stubs
    cl = Cluster(tmp, env, model)
    cl.router()
    cl.node("prefill", "p1")
    for nid in ("d1", "d2"):
        cl.node("decode", nid)
    nc.tap(cl.nodes_registered(3), "router sees 1 prefill and 2 decode nodes")
    target = "127.0.0.1:%d" % cl.rg
    schema_text = json.dumps(SCHEMA)

    # 1. undisturbed: the document ends (EOS where complete) and validates
    ref = Stream(stubs, target, "gr-ref", schema_text, 31)
    ref.join(180)
    ok, why = valid(ref.text)
    nc.tap(ref.final is not None and
           ref.final.finish_reason == common.FINISH_REASON_STOP and ok,
           "constrained request: %d tokens, %s" % (len(ref.ids), why),
           ref.error, ref.text[:300])

    # 2. the decode node killed mid-way: same tokens, same valid document
    s = Stream(stubs, target, "gr-fo", schema_text, 31)
    got = s.wait_tokens(20)
    _, d_id = cl.pair_of("gr-fo")
    before = len(s.ids)
    if d_id in cl.nodes:
        kill(cl, d_id)
    s.join(180)
    ok, why = valid(s.text)
    nc.tap(got and before < len(ref.ids) and s.final is not None and
           s.ids == ref.ids and s.text == ref.text and ok,
           "decode node %s killed after %d of %d tokens: %s, %s (%s)"
           % (d_id, before, len(ref.ids),
              "identical to the undisturbed run" if s.ids == ref.ids else "DIFFERENT",
              why, s.error or "ok"), s.text[:300])
    _, body = nc.http_get(cl.rh, "/metrics")
    m = re.search(r"^baton_router_decode_failovers_total (\S+)", body, re.M)
    nc.tap(m is not None and float(m.group(1)) >= 1, "the router counted the failover")

    # 3. batch invariance: the same request among 4 other constrained ones
    crowd = [Stream(stubs, target, "gr-crowd-%d" % k, schema_text, 100 + k)
             for k in range(4)]
    again = Stream(stubs, target, "gr-again", schema_text, 31)
    for t in crowd + [again]:
        t.join(180)
    nc.tap(again.ids == ref.ids and all(t.final is not None and valid(t.text)[0]
                                        for t in crowd),
           "the request batched among 4 other constrained requests is identical; "
           "theirs validate too", [t.error for t in crowd + [again]])

    # 4. a schema the compiler refuses: INVALID_ARGUMENT naming the keyword
    r = pb.GenerateRequest(model="tiny", prompt="hi")
    r.sampling.response_format.type = common.ResponseFormat.TYPE_JSON_SCHEMA
    r.sampling.response_format.schema = json.dumps(
        {"type": "object", "properties": {"when": {"type": "string", "format": "date"}}})
    try:
        with grpc.insecure_channel(target) as ch:
            list(pb_grpc.GenerateStub(ch).Generate(r, timeout=30))
        code, msg = "OK", ""
    except grpc.RpcError as e:
        code, msg = e.code().name, e.details()
    nc.tap(code == "INVALID_ARGUMENT" and "'format' at /properties/when" in msg,
           "grpc unsupported keyword -> INVALID_ARGUMENT (%s: %s)" % (code, msg))
    r.sampling.response_format.type = common.ResponseFormat.TYPE_JSON_OBJECT
    r.sampling.ignore_eos = True
    try:
        with grpc.insecure_channel(target) as ch:
            list(pb_grpc.GenerateStub(ch).Generate(r, timeout=30))
        code, msg = "OK", ""
    except grpc.RpcError as e:
        code, msg = e.code().name, e.details()
    nc.tap(code == "INVALID_ARGUMENT" and "ignore_eos" in msg,
           "grpc response_format with ignore_eos -> INVALID_ARGUMENT (%s: %s)" % (code, msg))
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
