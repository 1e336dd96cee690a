#!/usr/bin/python3
"""Metrics of a live cluster (issue 18): a router, a prefill and a decode
node with --kvstore, and a baton-kvstore on loopback. Checks: every
daemon's /metrics passes `promtool check metrics` and has baton_build_info
and the process_* series; the router has each vLLM-equivalent metric with
`model_name`; the kvstore counts the nodes' Pin reads as hits; nodes by
state; both nodes' per-request series with `model_name` (waiting, KV
usage, prefix queries and hits, prefill and decode-step times, lease
expiries); the request id as the nodes' log field (a JSON line of the
prefill, text lines of the decode); every query of
deploy/grafana/baton-dashboard.json names only
metrics the cluster exports; and, with Debian's prometheus installed, a
real Prometheus scraping the cluster answers every query.

usage: metrics_cluster.py shm|tcp   (BATON_BUILD_ROOT = the build folder)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import node_cluster as nc  # noqa: E402  (tap, start, gauge, ...)

BUILD = nc.BUILD
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD = os.path.join(SRC, "deploy", "grafana", "baton-dashboard.json")

# the router's series with a vLLM equivalent (docs/operations.md, Metrics)
VLLM_EQUIVALENTS = [
    "baton_router_ttft_seconds_bucket", "baton_router_itl_seconds_bucket",
    "baton_router_e2e_seconds_bucket", "baton_router_queue_time_seconds_bucket",
    "baton_router_prefill_time_seconds_bucket",
    "baton_router_decode_time_seconds_bucket",
    "baton_router_requests_running", "baton_router_requests_waiting",
    "baton_router_kv_cache_usage_ratio",
    "baton_router_prefix_cache_queries_total",
    "baton_router_prefix_cache_hits_total",
    "baton_router_prompt_tokens_total", "baton_router_generated_tokens_total",
    "baton_router_request_success_total",
]
# the nodes' series labelled with model_name
NODE_MODEL_SERIES = [
    "baton_node_requests_waiting", "baton_node_kv_cache_usage_ratio",
    "baton_node_prefix_cache_queries_total",
    "baton_node_prefix_cache_hits_total",
    "baton_node_prefill_seconds_count", "baton_node_decode_step_seconds_count",
    "baton_node_leases_expired_total",
]
PROCESS = ["baton_build_info", "process_resident_memory_bytes",
           "process_open_fds", "process_cpu_seconds_total",
           "process_start_time_seconds"]


def families(text):
    """{family name: [sample lines]} of an exposition (histogram samples
    under their family)."""
    fams, types = {}, {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
            fams.setdefault(m.group(1), [])
            continue
        if not line or line.startswith("#"):
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        fams.setdefault(base if types.get(base) == "histogram" else name,
                        []).append(line)
    return fams


def sample(text, name, labels):
    """The value of the first sample of `name` holding all of `labels`."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(lab in line for lab in labels):
                return float(line.rsplit(" ", 1)[1])
    return None


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append(t["expr"])
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            out.append(q["query"])
    return out


PROMQL_WORDS = {"sum", "by", "rate", "histogram_quantile", "max", "min", "avg",
                "le", "label_values", "without", "irate", "increase", "on",
                "ignoring", "count", "topk", "bottomk", "and", "or", "unless"}


def expr_metrics(expr):
    """Metric names in a PromQL expression: identifiers outside label
    matchers, braces, strings and range brackets that are no function,
    keyword or grouping label."""
    e = re.sub(r'"[^"]*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", "{}", e)
    e = re.sub(r"\[[^\]]*\]", "[]", e)
    e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", e)
    e = re.sub(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,[^)]*\)", r"\1", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        w = m.group(0)
        rest = e[m.end():].lstrip()
        if w in PROMQL_WORDS or rest.startswith("("):
            continue
        if re.fullmatch(r"\d.*", w):
            continue
        names.add(w)
    return names


def promtool_check(name, text):
    tool = shutil.which("promtool")
    if tool is None:
        print("ok %d - # SKIP promtool check metrics of %s: no promtool "
              "(apt install prometheus)" % (nc.N + 1, name))
        nc.N += 1
        return
    r = subprocess.run([tool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    out = (r.stdout + r.stderr).strip()
    nc.tap(r.returncode == 0 and out == "", "promtool check metrics: %s's "
           "/metrics is clean" % name, out[:2000])


def prometheus_queries(tmp, ports, exprs):
    """A real Prometheus on loopback scraping the cluster answers every
    dashboard query (bounded; skipped without Debian's prometheus)."""
    prom = shutil.which("prometheus")
    if prom is None:
        print("ok %d - # SKIP prometheus queries: no prometheus binary "
              "(apt install prometheus)" % (nc.N + 1))
        nc.N += 1
        return
    cfg = os.path.join(tmp, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n")
        for job, port in ports.items():
            f.write("  - job_name: %s\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % (job, port))
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    pport = s.getsockname()[1]
    s.close()
    p, _, _ = nc.start("prometheus", [prom, "--config.file=" + cfg,
                                      "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                                      "--web.listen-address=127.0.0.1:%d" % pport],
                       dict(os.environ), tmp, expect_line=False)
    base = "http://127.0.0.1:%d/api/v1/" % pport

    def api(path, **params):
        url = base + path + "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read().decode())

    deadline = time.time() + 40
    up = None
    while time.time() < deadline:
        if p.poll() is not None:
            break
        try:
            up = api("query", query="up")
            if len([x for x in up["data"]["result"] if x["value"][1] == "1"]) == len(ports):
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.5)
    if up is None:
        print("ok %d - # SKIP prometheus queries: prometheus did not start "
              "(see %s/prometheus.err)" % (nc.N + 1, tmp))
        nc.N += 1
        return
    n_up = len([x for x in up["data"]["result"] if x["value"][1] == "1"])
    nc.tap(n_up == len(ports), "prometheus scrapes all %d daemons (%d up)"
           % (len(ports), n_up))
    time.sleep(4)  # a few scrapes, for rate()
    bad = []
    for e in exprs:
        q = e.replace("$__rate_interval", "30s").replace("$model_name", ".*") \
             .replace("$job", ".*")
        m = re.fullmatch(r"label_values\((\w+), (\w+)\)", q)
        try:
            if m:
                r = api("label/%s/values" % m.group(2), **{"match[]": m.group(1)})
                ok = r["status"] == "success" and len(r["data"]) > 0
            else:
                r = api("query", query=q)
                ok = r["status"] == "success" and len(r["data"]["result"]) > 0
        except (OSError, ValueError) as ex:
            ok, r = False, str(ex)
        if not ok:
            bad.append("%s: %s" % (q, r))
    nc.tap(not bad, "prometheus answers all %d dashboard queries, each with "
           "data" % len(exprs),
           *bad[:5])


def main():
    tmp, model, env = nc.setup("baton-metrics-it-")
    env["UCX_POSIX_ERROR_HANDLING"] = "y"
    env["UCX_SYSV_ERROR_HANDLING"] = "y"
    _, kg, kh = nc.start("kvstore", [os.path.join(BUILD, "kvstore/baton-kvstore"),
                                     "--grpc-port", "0", "--http-port", "0",
                                     "--disk-dir", os.path.join(tmp, "disk"),
                                     "--dram-bytes", "16M"], env, tmp)
    _, rg, rh = nc.start("router", [os.path.join(BUILD, "router/baton-router"),
                                    "--model", model, "--grpc-port", "0",
                                    "--http-port", "0", "--heartbeat", "100ms"],
                         env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1",
              "--http-port", "0", "--kvstore", "ipv4:127.0.0.1:%d" % kg]
    _, _, ph = nc.start("p1", [os.path.join(BUILD, "prefill_node/baton-prefill")]
                        + common + ["--node-id", "p1", "--log-format", "json"],
                        env, tmp)
    _, _, dh = nc.start("d1", [os.path.join(BUILD, "decode_node/baton-decode")]
                        + common + ["--node-id", "d1"], env, tmp)
    nc.tap(nc.wait_ready(rh), "router ready with a prefill and a decode node "
           "and a kvstore")
    ports = {"router": rh, "prefill": ph, "decode": dh, "kvstore": kh}

    ids = [4091] + [(i * 31 + 17) % 4000 for i in range(1, 100)]
    body = {"model": "tiny", "prompt": ids, "max_tokens": 8, "temperature": 0,
            "ignore_eos": True}
    st, _ = nc.http_json(rh, "/v1/completions", body)
    nc.tap(st == 200, "a completion (%s)" % st)
    # the nodes' pools emptied: the prompt's blocks come from the kvstore
    time.sleep(0.5)
    r = subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router", target,
                        "flush-cache"], capture_output=True, text=True, timeout=10)
    nc.tap(r.returncode == 0, "batonctl flush-cache (%s)" % r.stderr.strip())
    time.sleep(0.3)
    st, _ = nc.http_json(rh, "/v1/completions", body)
    nc.tap(st == 200, "the completion again, its prefix read from the kvstore")
    time.sleep(0.5)  # the kvstore's metrics follow every 100 ms

    texts = {name: nc.http_get(port, "/metrics")[1] for name, port in ports.items()}
    for name, text in texts.items():
        promtool_check(name, text)
        fams = families(text)
        missing = [m for m in PROCESS if m not in fams]
        nc.tap(not missing, "%s has build info and process metrics" % name,
               "missing: %s" % missing)

    rt = texts["router"]
    missing = [m for m in VLLM_EQUIVALENTS
               if sample(rt, m, ['model_name="tiny"']) is None]
    nc.tap(not missing, "the router has every vLLM-equivalent metric with "
           "model_name", "missing: %s" % missing)
    counts = [sample(rt, "baton_router_%s_seconds_count" % h, [])
              for h in ("ttft", "e2e", "queue_time", "prefill_time", "decode_time")]
    nc.tap(counts == [2.0] * 5, "ttft, e2e, queue, prefill and decode time: one "
           "observation per request (%s)" % counts)
    idle = [sample(rt, "baton_router_requests_%s" % g, []) for g in ("running", "waiting")]
    nc.tap(idle == [0.0, 0.0], "no request running or waiting after both "
           "ended (%s)" % idle)
    ok = sample(rt, "baton_router_request_success_total",
                ['finished_reason="length"'])
    nc.tap(ok == 2, "request_success_total{finished_reason=\"length\"} counts "
           "both (%s)" % ok)
    q = sample(rt, "baton_router_prefix_cache_queries_total", [])
    h = sample(rt, "baton_router_prefix_cache_hits_total", [])
    nc.tap(q == 2 * len(ids) and h is not None and h > 0,
           "prefix cache queries and hits (%s, %s)" % (q, h))
    kv = sample(rt, "baton_router_prefix_cache_hits_by_source_total",
                ['source="kvstore"'])
    nc.tap(kv is not None and kv > 0, "prefix hits read from the kvstore "
           "(%s tokens)" % kv)
    ready = sample(rt, "baton_router_nodes_by_state",
                   ['role="decode"', 'state="ready"'])
    drained = sample(rt, "baton_router_nodes_by_state",
                     ['role="decode"', 'state="drained"'])
    nc.tap(ready == 1 and drained == 0 and
           nc.gauge(rh, 'baton_router_nodes{role="decode"}') == 1,
           "nodes by state: the decode node is ready (%s ready, %s drained)"
           % (ready, drained))

    # the nodes' series with model_name (docs/operations.md, Metrics)
    pt, dt = texts["prefill"], texts["decode"]
    tiny = ['model_name="tiny"']
    missing = [("prefill", m) for m in NODE_MODEL_SERIES
               if sample(pt, m, tiny) is None]
    missing += [("decode", m) for m in NODE_MODEL_SERIES
                if sample(dt, m, tiny) is None]
    nc.tap(not missing, "both nodes have every per-request series with "
           "model_name", "missing: %s" % missing)
    pq = sample(pt, "baton_node_prefix_cache_queries_total", tiny)
    phits = sample(pt, "baton_node_prefix_cache_hits_total", tiny)
    pcount = sample(pt, "baton_node_prefill_seconds_count", tiny)
    nc.tap(pq == 2 * len(ids) and phits is not None and phits > 0 and
           pcount == 2, "the prefill node: prefix cache queries and hits "
           "(%s, %s), two prefills timed (%s)" % (pq, phits, pcount))
    steps = sample(dt, "baton_node_decode_step_seconds_count", tiny)
    idle = [sample(t, m, tiny) for t in (pt, dt)
            for m in ("baton_node_requests_waiting",
                      "baton_node_leases_expired_total")]
    usage = [sample(t, "baton_node_kv_cache_usage_ratio", tiny) for t in (pt, dt)]
    nc.tap(steps is not None and steps >= 14 and idle == [0.0] * 4 and
           all(u is not None and 0 <= u <= 1 for u in usage),
           "the decode node times its steps (%s); nothing waiting, no lease "
           "expired (%s); kv usage ratios in [0, 1] (%s)" % (steps, idle, usage))

    # the request id is the log field: a JSON line of the prefill carries
    # "req", and the decode's text lines "req="
    lines = []
    with open(os.path.join(tmp, "p1.err")) as f:
        for line in f:
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    answered = [x for x in lines if "prefill answered" in x.get("msg", "")]
    nc.tap(len(answered) == 2 and all(x.get("req") for x in answered) and
           all(x.get("level") == "info" for x in answered),
           "the prefill's JSON log: an info line per answered request, "
           "carrying req (%s)" % answered[:1])
    with open(os.path.join(tmp, "d1.err")) as f:
        dlog = f.read()
    ended = re.findall(r"^.*req=\S+.*decode ended: .*finish length$", dlog, re.M)
    admitted = re.findall(r"^.*req=\S+.*decode admitted: ", dlog, re.M)
    same = answered and any(answered[0]["req"] in x for x in ended)
    nc.tap(len(ended) == 2 and len(admitted) == 2 and same,
           "the decode's log: admitted and ended (finish by name) per request, "
           "req= the prefill's request id (%s)" % ended[:1])

    kt = texts["kvstore"]
    hits = sample(kt, "baton_kvstore_lookup_blocks_total", ['result="hit"'])
    tier = sample(kt, "baton_kvstore_tier_hit_blocks_total", ['tier="dram"'])
    nc.tap(hits is not None and hits > 0 and tier is not None and tier > 0,
           "the kvstore counts the nodes' Pin reads as hits (%s hit blocks, "
           "%s from dram)" % (hits, tier))

    exported = set()
    for text in texts.values():
        for fam, lines in families(text).items():
            exported.add(fam)
            for line in lines:
                exported.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    exprs = dashboard_exprs()
    unknown = sorted({m for e in exprs for m in expr_metrics(e)} - exported)
    nc.tap(exprs and not unknown, "every query of the dashboard (%d) names "
           "only metrics the cluster exports" % len(exprs),
           "unknown: %s" % unknown)

    prometheus_queries(tmp, ports, exprs)

    # a drained node still counts in baton_router_nodes; by state it is not
    # ready any more
    r = subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router", target,
                        "drain", "d1", "--wait", "--timeout", "10s"],
                       capture_output=True, text=True, timeout=20)
    nc.tap(r.returncode == 0, "batonctl drain d1 --wait (%s)" % r.stderr.strip())
    deadline = time.time() + 10
    while time.time() < deadline:
        rt = nc.http_get(rh, "/metrics")[1]
        drained = sample(rt, "baton_router_nodes_by_state",
                         ['role="decode"', 'state="drained"'])
        if drained == 1:
            break
        time.sleep(0.2)
    ready = sample(rt, "baton_router_nodes_by_state",
                   ['role="decode"', 'state="ready"'])
    nc.tap(drained == 1 and ready == 0 and
           nc.gauge(rh, 'baton_router_nodes{role="decode"}') == 1,
           "a drained decode node: state=\"drained\" 1, state=\"ready\" 0, "
           "baton_router_nodes{role=\"decode\"} still 1 (%s, %s)" % (drained, ready))
    nc.finish(tmp)


if __name__ == "__main__":
    nc.run(main)
