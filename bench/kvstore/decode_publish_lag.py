#!/usr/bin/python3
"""How far the decode node's publishing lags its decoding, and what the
kvstore costs its decode steps: router + 1 prefill + 1 decode (+ a
baton-kvstore) on loopback, CONC concurrent generations of GEN tokens of
distinct prompts, run twice in this one run (kvstore on, then off). While
they decode the decode node's /metrics are sampled every 50 ms:
  - backlog: blocks handed to a publish and not yet answered by the store
    (baton_node_kvstore_publish_backlog_blocks), max and mean;
  - the generated blocks a failover would find now: published over filled
    (filled = decode tokens / block size);
  - after the last generation ends, how long until nothing is in flight,
    and published / dropped / failed blocks;
  - the decode step's mean time (baton_node_decode_step_seconds) on / off.

usage: decode_publish_lag.py BUILD [shm|tcp]   (knobs: CONC=8 GEN=400)
"""
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
if len(sys.argv) < 2:
    sys.exit(__doc__)
os.environ["BATON_BUILD_ROOT"] = os.path.abspath(sys.argv[1])
sys.argv = [sys.argv[0]] + sys.argv[2:]
import node_cluster as nc  # noqa: E402

CONC = int(os.environ.get("CONC", "8"))
GEN = int(os.environ.get("GEN", "400"))
BS = 16


def metrics(port):
    _, body = nc.http_get(port, "/metrics")
    out = {}
    for line in body.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, v = line.rsplit(" ", 1)
        try:
            out[name.split("{")[0] if name.endswith("}") and "le=" not in name
                else name] = float(v)
        except ValueError:
            pass
    return out


def one_run(tmp, model, env, with_kvs):
    nc.PROCS.clear()
    b = nc.BUILD
    _, rg, rh = nc.start("router", [os.path.join(b, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms"],
                         env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1",
              "--max-batch", str(CONC)]
    if with_kvs:
        _, kg, _ = nc.start("kvstore", [os.path.join(b, "kvstore/baton-kvstore"),
                                        "--grpc-port", "0", "--http-port", "0",
                                        "--disk-dir", os.path.join(tmp, "disk"),
                                        "--dram-bytes", "64M", "--router",
                                        target], env, tmp)
        common += ["--kvstore", "ipv4:127.0.0.1:%d" % kg]
    nc.start("p1", [os.path.join(b, "prefill_node/baton-prefill")] + common
             + ["--node-id", "p1"], env, tmp)
    _, _, dh = nc.start("d1", [os.path.join(b, "decode_node/baton-decode")]
                        + common + ["--node-id", "d1"], env, tmp)
    nc.wait_ready(rh)
    m0 = metrics(dh)
    clients = []
    for i in range(CONC):
        ids = [(7 * i + 3 * j) % 250 + 1 for j in range(48)]
        clients.append(subprocess.Popen(
            [os.path.join(b, "tests/integration/node_gen_client"), target,
             "tiny", ",".join(map(str, ids)), str(GEN)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    nc.PROCS.extend(clients)
    samples = []
    deadline = time.time() + 600
    while time.time() < deadline and any(c.poll() is None for c in clients):
        m = metrics(dh)
        tok = m.get("baton_node_decode_tokens_total", 0) - \
            m0.get("baton_node_decode_tokens_total", 0)
        pub = m.get("baton_node_kvstore_published_blocks_total", 0) - \
            m0.get("baton_node_kvstore_published_blocks_total", 0)
        samples.append((time.time(), tok, pub,
                        m.get("baton_node_kvstore_publish_backlog_blocks", 0)))
        time.sleep(0.05)
    t_end = time.time()
    for c in clients:
        c.communicate(timeout=60)
    settle = None
    while with_kvs and time.time() < t_end + 60:
        m = metrics(dh)
        if m.get("baton_node_kvstore_publish_backlog_blocks", 0) == 0:
            settle = time.time() - t_end
            break
        time.sleep(0.02)
    m = metrics(dh)
    d = {k: m.get(k, 0) - m0.get(k, 0) for k in m}
    nc.cleanup()
    steps = d.get("baton_node_decode_step_seconds_count", 0)
    res = {
        "step_ms": 1e3 * d.get("baton_node_decode_step_seconds_sum", 0)
        / max(steps, 1),
        "steps": steps,
        "tokens": d.get("baton_node_decode_tokens_total", 0),
    }
    if with_kvs:
        late = [s for s in samples if s[1] >= 4 * BS * CONC]
        ratio = [s[2] / (s[1] / BS) for s in late if s[1] >= BS]
        res.update({
            "backlog_max": max((s[3] for s in samples), default=0),
            "backlog_mean": sum(s[3] for s in samples) / max(len(samples), 1),
            "found_min": min(ratio, default=0),
            "found_mean": sum(ratio) / max(len(ratio), 1),
            "settle_s": settle,
            "published": d.get("baton_node_kvstore_published_blocks_total", 0),
            "dropped": d.get("baton_node_kvstore_publish_dropped_blocks_total", 0),
            "failed": d.get("baton_node_kvstore_publish_failed_total", 0),
            "pub_s_mean": d.get("baton_node_kvstore_publish_seconds_sum", 0)
            / max(d.get("baton_node_kvstore_publish_seconds_count", 0), 1),
        })
    return res


def main():
    tmp, model, env = nc.setup("baton-publag-")
    on = one_run(tmp, model, env, True)
    off = one_run(tmp, model, env, False)
    print("decode publish lag: %d concurrent generations of %d tokens, "
          "%d-token blocks, %s, load %.1f" % (CONC, GEN, BS, nc.MODE,
                                               os.getloadavg()[0]))
    print("| metric | value |")
    print("|---|---:|")
    print("| generated blocks filled (decode tokens / %d) | %.0f |"
          % (BS, on["tokens"] / BS))
    print("| published / dropped / failed | %.0f / %.0f / %.0f |"
          % (on["published"], on["dropped"], on["failed"]))
    print("| backlog max / mean (blocks in flight) | %.0f / %.1f |"
          % (on["backlog_max"], on["backlog_mean"]))
    print("| found by a failover mid-run, min / mean (published / filled) "
          "| %.2f / %.2f |" % (on["found_min"], on["found_mean"]))
    print("| publish -> commit answer, mean (ms) | %.1f |" % (1e3 * on["pub_s_mean"]))
    print("| settled after the last generation (s) | %s |"
          % ("%.2f" % on["settle_s"] if on["settle_s"] is not None else "no"))
    print("| decode step mean, kvstore on / off (ms) | %.2f / %.2f (%.2f) |"
          % (on["step_ms"], off["step_ms"],
             on["step_ms"] / off["step_ms"] if off["step_ms"] else 0))
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    nc.run(main)
