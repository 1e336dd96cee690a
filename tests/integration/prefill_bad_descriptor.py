#!/usr/bin/python3
"""A prefill node given a decode pool descriptor it cannot import, twice.

Found by the fault matrix (kill-decode, seed 7): a decode node whose
descriptor failed to import left the prefill node's remote entry with no
descriptor but its old length, so the next reservation of that node with a
descriptor of the same length compared against NULL and the prefill node
died of SIGSEGV. Here a real reservation from a decode node is sent to the
prefill node with its descriptor replaced by garbage of the same length,
twice, under the id of the decode node the prefill node already imported
(as after a restart of that node): each Prefill call
fails with an error, the prefill node lives, and the cluster then serves
baton-run's tokens.

usage: prefill_bad_descriptor.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

BUILD = nc.BUILD


def stubs(tmp):
    out = os.path.join(tmp, "stubs")
    os.mkdir(out)
    proto = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "proto")
    subprocess.run(["protoc", "-I", proto, "--python_out=" + out,
                    "--grpc_out=" + out,
                    "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                    "node.proto", "common.proto"], check=True, timeout=60)
    sys.path.insert(0, out)
    import node_pb2
    import node_pb2_grpc
    return node_pb2, node_pb2_grpc


def main():
    import grpc
    tmp, model, env = nc.setup("baton-bad-desc-")
    pb, pbg = stubs(tmp)
    ids = [4091] + [(i * 29 + 3) % 4000 for i in range(1, 40)]
    ref = nc.run_ref(model, ids, 8)
    _, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms"],
                         env, tmp)
    common = ["--model", model, "--router", "ipv4:127.0.0.1:%d" % rg,
              "--threads", "1"]
    p1, pg, _ = nc.start("p1", [os.path.join(BUILD, "prefill_node/baton-prefill")]
                         + common + ["--node-id", "p1"], env, tmp)
    _, dg, _ = nc.start("d1", [os.path.join(BUILD, "decode_node/baton-decode")]
                        + common + ["--node-id", "d1", "--kv-blocks", "64"], env, tmp)
    nc.tap(nc.wait_ready(rh, 60), "router ready with a prefill and a decode node")
    # the prefill node imports d1's descriptor once, as it serves
    first = nc.gen(rg, ids, 8)
    nc.tap(first is not None and first == ref, "a first request: baton-run's "
           "tokens (%s)" % first)

    # a real reservation (lease held while the stream is open)
    dreq = pb.DecodeRequest(request_id="bad-desc-lease", token_ids=ids)
    dreq.sampling.max_tokens = 4
    dreq.tenant.root_hash = b"\1" * 32
    dstub = pbg.DecodeStub(grpc.insecure_channel("127.0.0.1:%d" % dg))
    stream = dstub.DecodeStream(dreq, timeout=60)
    resv = next(stream).reservation
    n = len(resv.pool_descriptor)
    nc.tap(n > 0, "the decode node reserved blocks (descriptor of %d bytes)" % n)

    pstub = pbg.PrefillStub(grpc.insecure_channel("127.0.0.1:%d" % pg))
    for k in range(2):
        r = pb.PrefillRequest(request_id="bad-desc-%d" % k, model="tiny",
                              token_ids=ids)
        r.sampling.max_tokens = 4
        r.tenant.root_hash = b"\1" * 32
        r.reservation.CopyFrom(resv)
        r.reservation.pool_descriptor = bytes((b ^ 0x5a) for b in resv.pool_descriptor)
        code = None
        try:
            pstub.Prefill(r, timeout=30)
        except grpc.RpcError as e:
            code = e.code()
        nc.tap(code is not None and p1.poll() is None,
               "garbage descriptor %d: the Prefill call fails (%s) and the "
               "prefill node lives" % (k + 1, code))
    stream.cancel()
    toks = nc.gen(rg, ids, 8)
    nc.tap(toks is not None and toks == ref and p1.poll() is None,
           "the cluster then serves baton-run's tokens, the prefill node "
           "alive (%s)" % toks)
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
