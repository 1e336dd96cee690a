#!/usr/bin/python3
"""A real local cluster on loopback: baton-router + baton-prefill +
baton-decode (then a --role both node) on a tiny model from
baton-mkmodel. Checks: completions over HTTP and gRPC, greedy and sampled
tokens identical to baton-run (disaggregated, with chunked prefill and
prefix reuse, and colocated), a client disconnect frees every KV block,
SIGTERM drains and exits 0.

usage: node_cluster.py shm|tcp   (BATON_BUILD_ROOT = the build folder)

BATON_TEST_TIME_SCALE (a number > 0, default 1) multiplies how long the
harness waits (scaled()): its deadlines and timeouts, never a bound that a
check asserts about the daemons' behaviour. `make asan` and `make tsan`
set it for their slower builds.
"""
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get("BATON_BUILD_ROOT", "build-node")
MODE = sys.argv[1] if len(sys.argv) > 1 else "shm"
PROCS = []
LAST = {}
N = 0
FAILED = 0


def _time_scale():
    """BATON_TEST_TIME_SCALE as a float, 1 when unset; anything that is
    not a finite number > 0 stops the test (a typo must not pass as 1)."""
    text = os.environ.get("BATON_TEST_TIME_SCALE", "")
    if text == "":
        return 1.0
    try:
        v = float(text)
    except ValueError:
        v = 0.0
    if not 0 < v < float("inf"):
        sys.exit("BATON_TEST_TIME_SCALE=%r: want a number > 0" % text)
    return v


TIME_SCALE = _time_scale()


def scaled(secs):
    """How long a harness wait of `secs` lasts at BATON_TEST_TIME_SCALE."""
    return secs * TIME_SCALE


def no_wait_bound(secs, baseline, wait_cost):
    """The upper bound of a check that something happens *without* waiting
    (`wait_cost` seconds, a daemon's timeout that the scale leaves alone):
    `secs` at scale 1; scaled for a slower build, but never past the same
    work's `baseline` time (measured in this run) plus half the wait, so
    taking the waiting path still fails."""
    return min(scaled(secs), max(secs, baseline + wait_cost / 2))


def tap(ok, what, *why):
    """One TAP line; on failure each `why` follows as comment lines."""
    global N, FAILED
    N += 1
    if not ok:
        FAILED += 1
    print(("ok %d - %s" if ok else "not ok %d - %s") % (N, what), flush=True)
    if not ok:
        for w in why:
            for line in str(w).splitlines():
                print("# " + line, flush=True)


def bail(why):
    print("Bail out! " + why, flush=True)
    cleanup()
    sys.exit(1)


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
    for p in PROCS:
        try:
            p.wait(timeout=scaled(5))
        except subprocess.TimeoutExpired:
            pass


def setup(prefix):
    """A temporary folder holding the tiny model (logs go there too) and
    the environment for MODE's UCX transport: (tmp, model, env)."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    print("# logs in " + tmp, flush=True)
    model = os.path.join(tmp, "tiny")
    subprocess.run([os.path.join(BUILD, "tools/baton-mkmodel"), "builtin",
                    "--out", model], check=True, capture_output=True,
                   timeout=scaled(60))
    env = dict(os.environ)
    env["UCX_TLS"] = "posix,sysv,cma,self" if MODE == "shm" else "tcp,self"
    if MODE == "tcp":
        env["UCX_NET_DEVICES"] = "lo"
    env.setdefault("BATON_LOG_LEVEL", "info")
    return tmp, model, env


def finish(tmp):
    """Stops what is left, prints the TAP plan, keeps the logs on failure."""
    cleanup()
    print("1..%d" % N)
    if FAILED:
        print("# logs in " + tmp)
        sys.exit(1)
    subprocess.run(["rm", "-rf", tmp])


def run(main_fn):
    """Runs a test's main: no process outlives it, also on SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *a: (cleanup(), sys.exit(1)))
    try:
        main_fn()
    finally:
        cleanup()


def start(name, args, env, logdir, expect_line=True):
    """Starts a daemon (stderr to logdir/NAME.err); unless expect_line is
    False, waits for its "grpc_port=P http_port=Q" line: (proc, P, Q)."""
    err = open(os.path.join(logdir, name + ".err"), "w")
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env,
                         text=True)
    PROCS.append(p)
    if not expect_line:
        return p, 0, 0
    # bounded: the line comes once serving
    deadline = time.time() + scaled(30)
    line = ""
    while time.time() < deadline:
        line = p.stdout.readline()
        if line.startswith("grpc_port=") or p.poll() is not None:
            break
    m = re.match(r"grpc_port=(\d+) http_port=(\d+)", line)
    if not m:
        bail("%s did not start (see %s/%s.err)" % (name, logdir, name))
    return p, int(m.group(1)), int(m.group(2))


def ctl(target, *args, timeout=20):
    """batonctl against the router at `target`: its CompletedProcess
    (timeout scaled)."""
    return subprocess.run([os.path.join(BUILD, "cli/batonctl"), "--router",
                           target] + list(args), capture_output=True,
                          text=True, timeout=scaled(timeout))


def wait_for(fn, secs=60, every=0.1):
    """fn() until it is true or secs (scaled) pass; its last value."""
    deadline = time.time() + scaled(secs)
    v = fn()
    while not v and time.time() < deadline:
        time.sleep(every)
        v = fn()
    return v


def http_get(port, path):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(5))
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    except OSError:
        return 0, ""


def gauge(port, name):
    _, body = http_get(port, "/metrics")
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def tokenizing(port):
    """Prompts on or waiting for the router's tokenizer threads."""
    return gauge(port, "baton_router_prompts_tokenizing") or 0


def hold_tokenizer(port, send, n, answers):
    """Starts n threads, each calling send() (a request whose long prompt
    keeps the router's tokenizer thread busy; it appends its answer to
    `answers`), and waits until every one reached the tokenizer (on it or
    answered). Returns the threads."""
    threads = [threading.Thread(target=send) for _ in range(n)]
    for t in threads:
        t.start()
    deadline = time.time() + scaled(120)
    while time.time() < deadline and tokenizing(port) + len(answers) < n:
        time.sleep(0.005)
    return threads


def tokenizer_more(port, n, answers):
    """After hold_tokenizer: waits until one more prompt than its n reached
    the tokenizer (a request sent since waits there), or all n were
    answered first; true in the first case. An answer is appended after
    its prompt left the gauge, so the sum never counts one twice."""
    deadline = time.time() + scaled(120)
    while time.time() < deadline and len(answers) < n:
        if tokenizing(port) + len(answers) > n:
            return True
        time.sleep(0.005)
    return False


def tokenizer_idle(port, threads, secs=60):
    """Joins the threads of hold_tokenizer and waits until no prompt is
    left on the tokenizer threads (secs scaled); returns how many are."""
    for t in threads:
        t.join(scaled(120))
    deadline = time.time() + scaled(secs)
    while time.time() < deadline and tokenizing(port) != 0:
        time.sleep(0.05)
    return tokenizing(port)


def model_gauge(port, name):
    """The value of `name`'s series labelled with a model_name (the nodes'
    per-request series), None when there is none."""
    _, body = http_get(port, "/metrics")
    for line in body.splitlines():
        if line.startswith(name + "{") and 'model_name="' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def start_pd(model, env, tmp, p_args=(), d_args=(), p_env=None, d_env=None):
    """A router (100 ms heartbeats), prefill node p1 and decode node d1 on
    one thread each, the nodes with their extra arguments and
    environments: the router's (proc, grpc port, http port)."""
    router = start("router", [os.path.join(BUILD, "router/baton-router"),
                              "--model", model, "--grpc-port", "0",
                              "--http-port", "0", "--heartbeat", "100ms"],
                   env, tmp)
    common = ["--model", model, "--router", "ipv4:127.0.0.1:%d" % router[1],
              "--threads", "1"]
    start("p1", [os.path.join(BUILD, "prefill_node/baton-prefill")] + common
          + ["--node-id", "p1"] + list(p_args), p_env or env, tmp)
    start("d1", [os.path.join(BUILD, "decode_node/baton-decode")] + common
          + ["--node-id", "d1"] + list(d_args), d_env or env, tmp)
    return router


def wait_ready(port, secs=20):
    deadline = time.time() + scaled(secs)
    while time.time() < deadline:
        if http_get(port, "/readyz")[0] == 200:
            return True
        time.sleep(0.1)
    return False


def parse_logprobs(text):
    """The 'logprobs I: ID LP [ID:LP, ...]' lines of baton-run --logprobs
    and node_gen_client: [(id, lp, [(id, lp), ...])], floats as printed
    with 17 digits, so equal floats mean bit-identical f32 values."""
    out = []
    for m in re.finditer(r"^logprobs (\d+): (\d+) (\S+) \[(.*)\]$", text, re.M):
        if int(m.group(1)) != len(out):
            return None
        top = [(int(a), float(b)) for a, b in
               (x.split(":") for x in m.group(4).split(", ") if x)]
        out.append((int(m.group(2)), float(m.group(3)), top))
    return out


def run_ref(model, ids, n, temp=None, seed=None, logprobs=None):
    args = [os.path.join(BUILD, "tools/baton-run"), "--model", model,
            "--prompt-ids", ",".join(map(str, ids)), "--max-tokens", str(n),
            "--kv-dtype", "f32", "--ignore-eos", "--threads", "1"]
    if temp is not None:
        args += ["--temperature", str(temp), "--seed", str(seed)]
    if logprobs is not None:
        args += ["--logprobs", str(logprobs)]
    out = subprocess.run(args, capture_output=True, text=True,
                         timeout=scaled(60))
    m = re.search(r"^tokens: \d+ \[([0-9, ]*)\]", out.stdout, re.M)
    LAST["ref_lp"] = parse_logprobs(out.stdout)
    return [int(x) for x in m.group(1).split(",")] if m else None


def gen(router_grpc, ids, n, temp=None, seed=None, logprobs=None):
    args = [os.path.join(BUILD, "tests/integration/node_gen_client"),
            "ipv4:127.0.0.1:%d" % router_grpc, "tiny", ",".join(map(str, ids)),
            str(n)]
    if temp is not None or logprobs is not None:
        args += [str(temp or 0), str(seed or 0)]
    if logprobs is not None:
        args += [str(logprobs)]
    out = subprocess.run(args, capture_output=True, text=True,
                         timeout=scaled(60))
    m = re.search(r"^tokens:([0-9 ]*)$", out.stdout, re.M)
    u = re.search(r"^usage: (\d+) (\d+) (\d+)$", out.stdout, re.M)
    if out.returncode != 0 or not m:
        print("# client: rc %d %s %s" % (out.returncode, out.stdout.strip(),
                                         out.stderr.strip()))
        return None
    LAST["cached"] = int(u.group(3)) if u else -1
    LAST["lp"] = parse_logprobs(out.stdout)
    return [int(x) for x in m.group(1).split()]


def logprobs_sane(lps, toks, n_top, greedy):
    """One entry per token, for that token; logprob <= 0; n_top
    alternatives, sorted descending; greedy: the chosen one is the top-1."""
    if lps is None or toks is None or len(lps) != len(toks):
        return False
    for (tid, lp, top), t in zip(lps, toks):
        if tid != t or not lp <= 0 or len(top) != n_top:
            return False
        if any(top[i][1] < top[i + 1][1] for i in range(len(top) - 1)):
            return False
        if greedy and top and top[0] != (t, lp):
            return False
    return True


def http_json(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=scaled(30))
    c.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    r = c.getresponse()
    data = r.read().decode()
    if not body.get("stream"):
        return r.status, json.loads(data)
    chunks = [json.loads(line[6:]) for line in data.splitlines()
              if line.startswith("data: {")]
    return r.status, chunks


def check_http_logprobs(rh, ids, ref_lp):
    """Completions and chat, whole and streamed, against gRPC's logprobs
    (ref_lp, 2 alternatives, greedy) of the same prompt."""
    n = len(ref_lp)
    base = {"model": "tiny", "prompt": ids, "max_tokens": n, "temperature": 0,
            "ignore_eos": True, "logprobs": 2}
    st, js = http_json(rh, "/v1/completions", base)
    lp = js["choices"][0]["logprobs"]
    ok = (st == 200 and len(lp["tokens"]) == n == js["usage"]["completion_tokens"]
          and lp["token_logprobs"] == [x[1] for x in ref_lp]
          and [sorted(d.values(), reverse=True) for d in lp["top_logprobs"]]
          == [[y[1] for y in x[2]] for x in ref_lp]
          and lp["text_offset"][0] == 0
          and all(lp["text_offset"][i + 1] >= lp["text_offset"][i] for i in range(n - 1)))
    tap(ok, "http completions logprobs: one per token, equal to grpc's (%s)"
        % str(lp)[:100])
    st, chunks = http_json(rh, "/v1/completions", dict(base, stream=True))
    merged = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for c in chunks:
        for k in merged:
            if c["choices"] and c["choices"][0]["logprobs"]:
                merged[k] += c["choices"][0]["logprobs"][k]
    tap(st == 200 and merged == lp, "http streamed completions logprobs equal "
        "the whole response's (%d chunks)" % len(chunks))
    # a stop string: its tokens' logprobs still come, each once, whole and
    # streamed, though their text is held back and then cut
    stop = next((t for t in lp["tokens"][2:] if t.strip() and not t.startswith("bytes:")
                 and t not in "".join(lp["tokens"][:2])), None)
    if stop is not None:
        k = lp["tokens"].index(stop)
        st, js = http_json(rh, "/v1/completions", dict(base, stop=[stop]))
        ls = js["choices"][0]["logprobs"]
        st2, chunks = http_json(rh, "/v1/completions", dict(base, stop=[stop], stream=True))
        streamed = [x for c in chunks if c["choices"] and c["choices"][0]["logprobs"]
                    for x in c["choices"][0]["logprobs"]["token_logprobs"]]
        tap(st == 200 and js["choices"][0]["finish_reason"] == "stop" and
            len(ls["tokens"]) == js["usage"]["completion_tokens"] == k + 1 and
            ls["token_logprobs"] == lp["token_logprobs"][:k + 1] and
            streamed == ls["token_logprobs"],
            "http stop string %r: the logprobs of every token up to it, once "
            "(%d tokens)" % (stop, k + 1))
    zero = dict(base, logprobs=0)
    st, js = http_json(rh, "/v1/completions", zero)
    lz = js["choices"][0]["logprobs"]
    tap(st == 200 and lz["token_logprobs"] == lp["token_logprobs"]
        and all(d == {} for d in lz["top_logprobs"]),
        "http completions logprobs 0: the chosen token's only")
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 8, "temperature": 0, "ignore_eos": True,
            "logprobs": True, "top_logprobs": 3}
    st, js = http_json(rh, "/v1/chat/completions", chat)
    content = js["choices"][0]["logprobs"]["content"]
    ok = (st == 200 and len(content) == 8 == js["usage"]["completion_tokens"]
          and all(e["logprob"] <= 0 and len(e["top_logprobs"]) == 3
                  and e["top_logprobs"][0]["logprob"] == e["logprob"]
                  and e["top_logprobs"][0]["bytes"] == e["bytes"]
                  for e in content)
          and bytes(b for e in content for b in e["bytes"]).decode("utf-8", "replace")
          == js["choices"][0]["message"]["content"])
    tap(ok, "http chat logprobs: one per token, bytes spell the message (%s)"
        % str(content)[:100])
    st, chunks = http_json(rh, "/v1/chat/completions", dict(chat, stream=True))
    sc = [e for c in chunks if c["choices"] and c["choices"][0]["logprobs"]
          for e in c["choices"][0]["logprobs"]["content"]]
    tap(st == 200 and sc == content, "http streamed chat logprobs equal the "
        "whole response's")
    st, js = http_json(rh, "/v1/chat/completions", dict(chat, top_logprobs=0))
    c0 = js["choices"][0]["logprobs"]["content"]
    tap(st == 200 and [e["logprob"] for e in c0] == [e["logprob"] for e in content]
        and all(e["top_logprobs"] == [] for e in c0),
        "http chat logprobs without top_logprobs: the chosen token's only")


def decode_only(node_grpc, ids, n, lease_ms):
    out = subprocess.run([os.path.join(BUILD, "tests/integration/node_gen_client"),
                          "--decode", "ipv4:127.0.0.1:%d" % node_grpc,
                          ",".join(map(str, ids)), str(n), str(lease_ms)],
                         capture_output=True, text=True, timeout=scaled(30))
    r = re.search(r"^reservation: (-?\d+) blocks$", out.stdout, re.M)
    c = re.search(r"^code: (\d+) (.*)$", out.stdout, re.M)
    if not r or not c:
        return None, None, out.stdout
    return int(r.group(1)), int(c.group(1)), c.group(2)


def main():
    tmp, model, env = setup("baton-node-it-")
    # NODE_TEST_ROUTER: another router binary (e.g. a normal build's when
    # the nodes come from a sanitizer build)
    router_bin = os.environ.get("NODE_TEST_ROUTER",
                                os.path.join(BUILD, "router/baton-router"))
    _, rg, rh = start("router", [router_bin,
                                 "--model", model, "--grpc-port", "0",
                                 "--http-port", "0", "--heartbeat", "100ms"],
                      env, tmp)
    target = "ipv4:127.0.0.1:%d" % rg
    common = ["--model", model, "--router", target, "--threads", "1"]
    p, _, ph = start("prefill", [os.path.join(BUILD, "prefill_node/baton-prefill")]
                     + common + ["--max-prefill-tokens", "32"], env, tmp)
    d, dg, dh = start("decode", [os.path.join(BUILD, "decode_node/baton-decode")]
                      + common + ["--kv-blocks", "512", "--node-id", "d1",
                                  "--lease-fence-timeout", "1s"],
                      env, tmp)
    tap(wait_ready(rh), "router ready with a prefill and a decode node")

    # 0. --kv-prefault (the default): the decode pool's pages come into the
    # process at start, in the background, so a first step over blocks a
    # prefill node wrote takes no page faults
    def pool_faulted():
        with open(os.path.join(tmp, "decode.err")) as f:
            return re.search(r"region \d+ faulted in: (\d+) MiB", f.read())
    m = wait_for(pool_faulted, 30)
    want = int(m.group(1)) * 1024 if m else 1
    # the pool's mapping (shared memory over shm, anonymous over tcp): the
    # one of about its size, resident in full though no request ran yet
    rss = size = 0
    with open("/proc/%d/smaps" % d.pid) as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("Rss:") and want <= size <= want + 4096:
                rss = max(rss, int(line.split()[1]))
    ratio = wait_for(lambda: gauge(dh, "baton_node_kv_prefaulted_ratio") == 1.0,
                     5) and 1.0
    tap(m is not None and rss >= want and ratio == 1.0,
        "the decode node faulted its kv pool in at start (%s; the pool's "
        "mapping has %d kB resident; baton_node_kv_prefaulted_ratio %s)"
        % (m.group(0) if m else "no log line", rss,
           gauge(dh, "baton_node_kv_prefaulted_ratio")))

    # 1. HTTP completion (curl)
    body = json.dumps({"model": "tiny", "prompt": "hello world, this is",
                       "max_tokens": 8, "temperature": 0, "ignore_eos": True})
    out = subprocess.run(["curl", "-s", "-m", "%g" % scaled(20),
                          "http://127.0.0.1:%d/v1/completions" % rh,
                          "-H", "content-type: application/json", "-d", body],
                         capture_output=True, text=True, timeout=scaled(30))
    try:
        js = json.loads(out.stdout)
        ok = (len(js["choices"][0]["text"]) > 0 and
              js["usage"]["completion_tokens"] == 8)
    except (ValueError, KeyError, IndexError):
        ok = False
    tap(ok, "http completion returns text (%s)" % out.stdout[:120])

    # 2. gRPC greedy == baton-run
    short = [4091, 104, 262, 310, 554, 44, 607, 330, 277, 667, 116]
    ref = run_ref(model, short, 16)
    ref_greedy = ref
    got = gen(rg, short, 16)
    tap(ref is not None and got == ref,
        "grpc greedy tokens equal baton-run (%s vs %s)" % (got, ref))
    # 3. sampled, seeded
    ref = run_ref(model, short, 16, 0.9, 1234)
    got = gen(rg, short, 16, 0.9, 1234)
    tap(ref is not None and got == ref,
        "grpc sampled tokens equal baton-run (%s vs %s)" % (got, ref))
    # 3a. logprobs (disaggregated): those of baton-run, bit for bit
    ref = run_ref(model, short, 16, logprobs=5)
    ref_lp5 = LAST["ref_lp"]
    got = gen(rg, short, 16, logprobs=5)
    tap(got == ref and logprobs_sane(LAST["lp"], got, 5, True) and
        LAST["lp"] == ref_lp5,
        "grpc greedy logprobs (top 5): sane and equal to baton-run's (%s)"
        % str(LAST["lp"])[:120])
    ref = run_ref(model, short, 16, 0.9, 1234, logprobs=3)
    got = gen(rg, short, 16, 0.9, 1234, logprobs=3)
    tap(got == ref and logprobs_sane(LAST["lp"], got, 3, False) and
        LAST["lp"] == LAST["ref_lp"],
        "grpc sampled logprobs (top 3) equal baton-run's")
    got = gen(rg, short, 16, logprobs=0)
    tap(got == ref_greedy and logprobs_sane(LAST["lp"], got, 0, True) and
        [x[1] for x in LAST["lp"]] == [x[1] for x in ref_lp5],
        "grpc logprobs_chosen alone: the chosen token's logprob, no "
        "alternatives")
    got = gen(rg, short, 8, logprobs=2)
    check_http_logprobs(rh, short, LAST["lp"])
    # 4. long prompt: several 32-token chunks on P, layer-wise transfer
    long_ids = [4091] + [(i * 37 + 11) % 4000 for i in range(1, 100)]
    ref_long = run_ref(model, long_ids, 12)
    got = gen(rg, long_ids, 12)
    tap(ref_long is not None and got == ref_long,
        "chunked prefill (100 tokens, chunks of 32) equals baton-run")
    # 5. the same prompt again: P reuses its cached prefix
    got = gen(rg, long_ids, 12)
    tap(got == ref_long and LAST.get("cached", 0) >= 64,
        "prefix-cached prefill gives the same tokens (%s cached)"
        % LAST.get("cached"))

    # 5a. concurrent requests share decode steps (and interleave with
    # prefill chunks): each still gets baton-run's tokens
    prompts = [[4091] + [(i * k + 5) % 4000 for i in range(1, 20 + 9 * k)]
               for k in range(1, 5)]
    procs = [subprocess.Popen(
        [os.path.join(BUILD, "tests/integration/node_gen_client"), target,
         "tiny", ",".join(map(str, ids)), "150", "0.7", str(k)],
        stdout=subprocess.PIPE, text=True) for k, ids in enumerate(prompts)]
    PROCS.extend(procs)
    same = 0
    for k, (q, ids) in enumerate(zip(procs, prompts)):
        try:
            o = q.communicate(timeout=scaled(120))[0]
        except subprocess.TimeoutExpired:
            o = ""
        m = re.search(r"^tokens:([0-9 ]*)$", o, re.M)
        toks = [int(x) for x in m.group(1).split()] if m else None
        same += toks == run_ref(model, ids, 150, 0.7, k)
    tap(same == len(prompts), "4 concurrent sampled requests each equal "
        "baton-run (%d of %d)" % (same, len(prompts)))

    # 5b. transfer health: P's transfers to d1, as its heartbeats report
    ctl = os.path.join(BUILD, "cli/batonctl")
    pair = None
    deadline = time.time() + scaled(5)
    while time.time() < deadline and pair is None:
        th = subprocess.run([ctl, "--router", target, "--json",
                             "transfer-health"], capture_output=True,
                            text=True, timeout=scaled(10))
        try:
            pairs = json.loads(th.stdout).get("pairs", [])
        except ValueError:
            pairs = []
        pair = next((x for x in pairs if x.get("decode_node") == "d1" and
                     int(x.get("ops", 0)) >= 3), None)
        if pair is None:
            time.sleep(0.1)
    tap(pair is not None and int(pair.get("bytes", 0)) > 0 and
        int(pair.get("errors", 0)) == 0 and
        float(pair.get("latency_p99_ms", 0)) >= float(pair.get("latency_p50_ms", -1)) > 0 and
        float(pair.get("bandwidth_gbps", 0)) > 0,
        "batonctl transfer-health: the prefill -> d1 pair with its bytes, "
        "transfers, no errors, latency and bandwidth (%s)" % pair)
    ops_metric = gauge(ph, 'baton_node_kv_transfers_total{decode="d1"}')
    tail_count = gauge(ph, 'baton_node_kv_transfer_tail_seconds_count{decode="d1"}')
    tap(ops_metric is not None and ops_metric >= 3 and tail_count == ops_metric,
        "the prefill node's /metrics count its transfers to d1 (%s, tail "
        "histogram %s)" % (ops_metric, tail_count))
    th = subprocess.run([ctl, "--router", target, "transfer-health"],
                        capture_output=True, text=True, timeout=scaled(10))
    tap(th.returncode == 0 and " d1 " in th.stdout,
        "batonctl transfer-health prints the pairs as a table (%s)"
        % th.stdout.strip().replace("\n", " | ")[:160])

    # 5c. the router's flush-cache command empties P's prefix cache
    if os.path.exists(ctl):
        fl = subprocess.run([ctl, "--router", target, "flush-cache"],
                            capture_output=True, text=True, timeout=scaled(10))
        time.sleep(0.2)
        got = gen(rg, long_ids, 12)
        tap(fl.returncode == 0 and got == ref_long and LAST.get("cached") == 0,
            "flush-cache: the next prefill computes everything again "
            "(rc %d, %s cached)" % (fl.returncode, LAST.get("cached")))

    # 6. a client disconnect frees every block on D within a second (scaled:
    # a slower build decodes slower too); the decoded-token count shows that
    # the cancel freed them, not the end of the 1900 tokens
    total = gauge(dh, "baton_node_kv_free_blocks")
    decoded0 = gauge(dh, "baton_node_decode_tokens_total") or 0
    c = http.client.HTTPConnection("127.0.0.1", rh, timeout=scaled(10))
    c.request("POST", "/v1/completions", json.dumps(
        {"model": "tiny", "prompt": "a long story", "max_tokens": 1900,
         "ignore_eos": True, "stream": True}),
        {"content-type": "application/json"})
    r = c.getresponse()
    r.fp.readline()
    used = gauge(dh, "baton_node_kv_used_blocks")
    ratio = model_gauge(dh, "baton_node_kv_cache_usage_ratio")
    c.sock.close()
    c.close()
    t0 = time.time()
    freed = False
    while time.time() - t0 < scaled(1.0):
        if gauge(dh, "baton_node_kv_used_blocks") == 0:
            freed = True
            break
        time.sleep(0.05)
    decoded = (gauge(dh, "baton_node_decode_tokens_total") or 0) - decoded0
    tap(used is not None and used > 0 and freed and decoded < 1900 and
        gauge(dh, "baton_node_kv_free_blocks") == total,
        "disconnect frees every block (%s used while streaming, freed %s "
        "after %.2fs, %d of 1900 tokens decoded)"
        % (used, freed, time.time() - t0, decoded))
    steps = model_gauge(dh, "baton_node_decode_step_seconds_count")
    tap(ratio is not None and 0 < ratio <= 1 and
        model_gauge(dh, "baton_node_kv_cache_usage_ratio") == 0 and
        steps is not None and steps > 0,
        "baton_node_kv_cache_usage_ratio{model_name} moves (%s while "
        "streaming, 0 after); decode steps timed (%s)" % (ratio, steps))

    # 7. a lease whose kv cache never comes ends DEADLINE_EXCEEDED; its
    # blocks wait for a writer's fence, and with no writer at all go back
    # after --lease-fence-timeout (1s here); a request too big for the
    # pool is refused
    expired0 = model_gauge(dh, "baton_node_leases_expired_total")
    waiting = []
    t = threading.Thread(target=lambda: waiting.append(decode_only(dg, short, 8, 300)))
    t.start()
    seen_waiting = None
    while t.is_alive() and not seen_waiting:
        seen_waiting = model_gauge(dh, "baton_node_requests_waiting")
        time.sleep(0.02)
    t.join()
    nb, code, msg = waiting[0]
    held = gauge(dh, "baton_node_kv_used_blocks")
    with open(os.path.join(tmp, "decode.err")) as f:
        dlog = f.read()
    tap(re.search(r" warn +decode req=\S+ lease \d+ expired before "
                  r"kv-complete", dlog) and
        re.search(r" info +decode req=\S+ decode failed: lease expired "
                  r"before the kv cache arrived \(DEADLINE_EXCEEDED\)", dlog),
        "the expiry is a warn line and the request's end an info line, "
        "both with req=")
    tap(expired0 == 0 and seen_waiting == 1 and
        model_gauge(dh, "baton_node_requests_waiting") == 0 and
        model_gauge(dh, "baton_node_leases_expired_total") == 1,
        "a lease waiting for its kv cache counts in "
        "baton_node_requests_waiting (%s), its expiry in "
        "baton_node_leases_expired_total (%s -> %s)" % (
            seen_waiting, expired0,
            model_gauge(dh, "baton_node_leases_expired_total")))
    deadline = time.time() + scaled(15)
    while time.time() < deadline and gauge(dh, "baton_node_kv_used_blocks"):
        time.sleep(0.1)
    tap(nb == 1 and code == 4 and held and held > 0 and
        gauge(dh, "baton_node_kv_used_blocks") == 0 and
        gauge(dh, "baton_node_lease_fence_timeouts_total") == 1,
        "lease expiry: DEADLINE_EXCEEDED, blocks held for a fence, then "
        "freed (%s %s %s, %s held)" % (nb, code, msg, held))
    nb, code, msg = decode_only(dg, short, 100000, 1000)
    tap(nb == -1 and code == 8 and "reserve" in msg,
        "too large for the pool: RESOURCE_EXHAUSTED (%s)" % msg)
    # 8. the router's drain command: the node refuses new work, undrain
    if os.path.exists(ctl):
        subprocess.run([ctl, "--router", target, "drain", "d1"],
                       capture_output=True, timeout=scaled(10))
        deadline = time.time() + scaled(5)
        code = msg = None
        while time.time() < deadline and code != 14:
            nb, code, msg = decode_only(dg, short, 8, 300)
            time.sleep(0.05)
        subprocess.run([ctl, "--router", target, "undrain", "d1"],
                       capture_output=True, timeout=scaled(10))
        deadline = time.time() + scaled(5)
        got = None
        while time.time() < deadline and got is None:
            time.sleep(0.1)
            got = gen(rg, short, 16)
        tap(code == 14 and got is not None,
            "drain command refuses new work (UNAVAILABLE), undrain serves "
            "again (%s %s)" % (code, msg))
        with open(os.path.join(tmp, "decode.err")) as f:
            refused = [x for x in f if "decode refused: the node is "
                       "draining (UNAVAILABLE)" in x and " info " in x]
        tap(refused, "the refusal is an info line of the decode node (%s)"
            % (refused[:1] or "none"))

    # 9. --role both alone: the same tokens without the UCX hop
    # SIGTERM while a request streams: it still finishes, then exit 0
    deadline = time.time() + scaled(10)   # leases of the drain loop: fence bound
    while time.time() < deadline and gauge(dh, "baton_node_kv_used_blocks"):
        time.sleep(0.1)
    tap(gauge(dh, "baton_node_kv_used_blocks") == 0 and
        http_get(rh, "/readyz")[0] == 200, "idle again after the tests above")
    # the prefill queue the HPA scales on is exported, and empty when idle
    tap(gauge(ph, "baton_node_queued_prefill_tokens") == 0,
        "the prefill node exports baton_node_queued_prefill_tokens, 0 when idle (%s)"
        % gauge(ph, "baton_node_queued_prefill_tokens"))
    # a decode node killed mid-stream: the router re-prefills prompt ++
    # generated on another one and the tokens stay those of baton-run
    d2, _, d2h = start("decode2", [os.path.join(BUILD, "decode_node/baton-decode")]
                       + common + ["--kv-blocks", "512", "--node-id", "d2"],
                       env, tmp)
    deadline = time.time() + scaled(10)
    while time.time() < deadline and "d2" not in subprocess.run(
            [ctl, "--router", target, "nodes"], capture_output=True,
            text=True, timeout=scaled(10)).stdout:
        time.sleep(0.05)
    fo = subprocess.Popen([os.path.join(BUILD, "tests/integration/node_gen_client"),
                           target, "tiny", ",".join(map(str, short)), "600",
                           "0", "0", "2"],
                          stdout=subprocess.PIPE, text=True)
    PROCS.append(fo)
    victim = None
    deadline = time.time() + scaled(10)
    while time.time() < deadline and victim is None:
        for q, hp in ((d, dh), (d2, d2h)):
            if gauge(hp, "baton_node_running_sequences"):
                victim = q
                break
    if victim is not None:
        time.sleep(0.05)
        victim.kill()
    try:
        fo_out = fo.communicate(timeout=scaled(30))[0]
    except subprocess.TimeoutExpired:
        fo_out = ""
    m = re.search(r"^tokens:([0-9 ]*)$", fo_out, re.M)
    fo_toks = [int(x) for x in m.group(1).split()] if m else None
    fovers = gauge(rh, "baton_router_decode_failovers_total")
    tap(victim is not None and fovers == 1 and
        fo_toks == run_ref(model, short, 600, logprobs=2),
        "decode failover mid-stream keeps the tokens of baton-run (%s "
        "failovers; %s)" % (fovers, fo_out.replace("\n", " ")[-50:]))
    fo_lp = parse_logprobs(fo_out)
    tap(logprobs_sane(fo_lp, fo_toks, 2, True) and fo_lp == LAST["ref_lp"],
        "and its logprobs too: one per token, none lost or repeated, equal "
        "to baton-run's across the failover")
    if victim is d:
        d, dh = d2, d2h
    bg = subprocess.Popen([os.path.join(BUILD, "tests/integration/node_gen_client"),
                           target, "tiny", ",".join(map(str, short)), "400"],
                          stdout=subprocess.PIPE, text=True)
    PROCS.append(bg)
    deadline = time.time() + scaled(10)
    while time.time() < deadline and not gauge(dh, "baton_node_running_sequences"):
        time.sleep(0.01)
    for q in (p, d):
        q.send_signal(signal.SIGTERM)
    try:
        bg_out = bg.communicate(timeout=scaled(30))[0]
    except subprocess.TimeoutExpired:
        bg_out = ""
    tap(bg.returncode == 0 and "usage: 11 400" in bg_out,
        "a request in flight at SIGTERM finishes (%s)"
        % bg_out.replace("\n", " ")[-60:])
    rcs = []
    for q in (p, d):
        try:
            rcs.append(q.wait(timeout=scaled(10)))
        except subprocess.TimeoutExpired:
            rcs.append(None)
    tap(rcs == [0, 0], "SIGTERM drains and exits 0 (%s)" % rcs)
    b, _, bh = start("both", [os.path.join(BUILD, "decode_node/baton-decode")]
                     + common + ["--role", "both", "--max-prefill-tokens",
                                 "48", "--prefix-cache", "false"], env, tmp)
    deadline = time.time() + scaled(20)
    got = None
    while time.time() < deadline and got is None:
        got = gen(rg, short, 16)
        if got is None:
            time.sleep(0.2)
    tap(got == run_ref(model, short, 16),
        "--role both greedy tokens equal baton-run")
    got = gen(rg, short, 16, logprobs=5)
    tap(got == ref_greedy and LAST["lp"] == ref_lp5,
        "--role both logprobs equal the disaggregated ones and baton-run's")
    got = gen(rg, long_ids, 12)
    tap(got == ref_long, "--role both chunked prefill equals baton-run")
    got = gen(rg, long_ids, 12)
    tap(got == ref_long and LAST.get("cached") == 0,
        "--prefix-cache false: the same prompt again is computed in full "
        "(%s cached) with the same tokens" % LAST.get("cached"))
    b.send_signal(signal.SIGTERM)
    try:
        rc = b.wait(timeout=scaled(10))
    except subprocess.TimeoutExpired:
        rc = None
    tap(rc == 0, "--role both exits 0 on SIGTERM")
    finish(tmp)


if __name__ == "__main__":
    run(main)
