#!/usr/bin/python3
"""A decode step allocates no logits (issue 15, "found by reading": every
decode step malloc'ed max_batch x vocab x 4 bytes of logits, 32 MiB at a
128k vocabulary).

The decode node runs under an LD_PRELOAD shim (malloc_big.so) that writes
down every allocation of at least max_batch x vocab x 4 bytes. Once the
node serves, its count holds the start-up allocations (the step buffers
among them: the shim sees them, or the test is void); three requests of
24 tokens each (72 decode steps, some batched) must add none.

usage: node_step_alloc.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402

BUILD = nc.BUILD
MAX_BATCH = 16


def count(path):
    try:
        with open(path) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


def asan_build():
    """An ASan build owns malloc and must come first: no shim then."""
    out = subprocess.run(["ldd", os.path.join(BUILD, "decode_node/baton-decode")],
                         capture_output=True, text=True)
    return "libasan" in out.stdout


def main():
    if asan_build():
        print("1..0 # SKIP the decode node is built with ASan, which must own malloc")
        return
    tmp, model, env = nc.setup("baton-step-alloc-")
    with open(os.path.join(model, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    big = MAX_BATCH * vocab * 4
    out = os.path.join(tmp, "d1.big")
    shim = os.path.join(BUILD, "tests/integration/libmalloc_big.so")
    prompts = [[4091] + [(i * (31 + 2 * k) + 7 * k) % 4000 for i in range(1, 40)]
               for k in range(3)]
    refs = [nc.run_ref(model, ids, 24) for ids in prompts]
    nc.tap(all(r is not None and len(r) == 24 for r in refs),
           "baton-run's reference tokens")
    _, rg, rh = nc.start_pd(
        model, env, tmp, d_args=["--kv-blocks", "64", "--max-batch", str(MAX_BATCH)],
        d_env=dict(env, LD_PRELOAD=shim, BATON_TEST_BIG_ALLOC=str(big),
                   BATON_TEST_BIG_ALLOC_OUT=out))
    nc.tap(nc.wait_ready(rh, 60), "router ready with a prefill and a decode node")
    at_start = count(out)
    nc.tap(at_start >= 1, "the shim saw the decode node's start-up allocations "
           "of >= %d bytes (%d)" % (big, at_start))
    for k, ids in enumerate(prompts):
        toks = nc.gen(rg, ids, 24)
        nc.tap(toks == refs[k], "request %d: tokens equal baton-run's" % (k + 1))
    after = count(out)
    nc.tap(after == at_start, "72 decode steps allocated nothing of >= %d "
           "bytes (%d at start, %d after)" % (big, at_start, after))
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
