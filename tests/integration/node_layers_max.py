#!/usr/bin/python3
"""The scheduler's layer queue at its bound (issue 15, "found by
reading": the worker hands each computed layer to the loop thread through
a fixed queue, which once dropped an index silently when full, leaving
the decode node with a layer of KV missing).

A model with BT_MODEL_MAX_LAYERS (1024) layers, served by a router, a
prefill node cutting its prompt into several steps and a decode node.
The prefill node's loop thread takes no layer until the step ends
(BATON_TEST_LAYERS_AT_STEP_END: a loop busy elsewhere, at its worst), so
every step fills the queue to the last entry, and the queue must be empty
again before the next step. The generated tokens must equal
baton-run's bit for bit (a layer never sent leaves the decode node with
stale KV and other tokens), and the prefill node never reports an
overflow.

usage: node_layers_max.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402  (tap, setup, start, run_ref, gen, ...)

BUILD = nc.BUILD
LAYERS = 1024   # BT_MODEL_MAX_LAYERS, the queue's size


def main():
    tmp, _, env = nc.setup("baton-layers-max-")
    # tiny in every other dimension, so 1024 layers stay cheap; the folder
    # name is the model name node_cluster's client asks for
    model = os.path.join(tmp, "deep", "tiny")
    subprocess.run([os.path.join(BUILD, "tools/baton-mkmodel"), "builtin",
                    "--out", model, "--layers", str(LAYERS), "--hidden", "16",
                    "--heads", "2", "--kv-heads", "1", "--head-dim", "8",
                    "--ffn", "32"], check=True, capture_output=True, timeout=120)
    # two prompts with nothing shared past the first token, so the second
    # is computed whole too (no cached prefix)
    prompts = [[4091] + [(i * (37 + 2 * k) + 11 * k) % 4000 for i in range(1, 100)]
               for k in range(2)]
    refs = [nc.run_ref(model, ids, 8) for ids in prompts]
    nc.tap(all(r is not None and len(r) == 8 for r in refs),
           "baton-run on a %d-layer model (%s)" % (LAYERS, refs))
    # 100 prompt tokens in steps of 32: four steps, each 1024 layers
    router, rg, rh = nc.start_pd(
        model, env, tmp, p_args=["--max-prefill-tokens", "32"],
        d_args=["--kv-blocks", "64"],
        p_env=dict(env, BATON_TEST_LAYERS_AT_STEP_END="1"))
    nc.tap(nc.wait_ready(rh, 60), "router ready with a prefill and a decode node")
    for k, ids in enumerate(prompts):   # the second: the queue as the first left it
        toks = nc.gen(rg, ids, 8)
        nc.tap(toks is not None and toks == refs[k],
               "request %d: every layer's KV reached the decode node: tokens "
               "equal baton-run (%s)" % (k + 1, toks))
    with open(os.path.join(tmp, "p1.err")) as f:
        log = f.read()
    nc.tap("layer queue overflowed" not in log and router.poll() is None,
           "the prefill node never found its layer queue full")
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
