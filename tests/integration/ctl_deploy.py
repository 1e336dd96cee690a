#!/usr/bin/python3
"""deploy/k8s and deploy/systemd hold together (TAP).

Parses every YAML file, renders the overlays and the components (in both
orders) with `kubectl kustomize`, and checks what was rendered, as the
cluster would get it: kinds, names, selectors, probes (liveness never on
anything a drain changes), ports and variables against the daemons' own
flags (`--help` of the built binaries), images, ConfigMap hashes, HPA
targets, rollout strategies and budgets. Runs `systemd-analyze verify` on
the units when systemd is installed. Environment: BATON_SOURCE_ROOT,
BATON_ROUTER_BIN, BATON_BUILD_ROOT. kubectl is on the project's machines
(not in Debian 12: its kubernetes-client 1.20 has a kustomize without
components); without it the rendered checks are skipped, or fail under CI.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("BATON_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(SRC, "deploy", "k8s")
SYSTEMD = os.path.join(SRC, "deploy", "systemd")
BUILD = os.environ.get("BATON_BUILD_ROOT", "")
CI = os.environ.get("CI") == "true"

n = 0
failed = 0


def ok(desc):
    global n
    n += 1
    print("ok %d - %s" % (n, desc))


def not_ok(desc, *why):
    global n, failed
    n += 1
    failed += 1
    print("not ok %d - %s" % (n, desc))
    for w in why:
        for line in str(w).splitlines():
            print("# " + line)


def skip(desc, why):
    global n
    n += 1
    print("ok %d - %s # SKIP %s" % (n, desc, why))


def check(desc, problems):
    if problems:
        not_ok(desc, *problems)
    else:
        ok(desc)


try:
    import yaml
except ImportError:
    print("1..1")
    if CI:
        print("not ok 1 - python3-yaml is missing (scripts/deps.sh installs it)")
        sys.exit(1)
    print("ok 1 # SKIP python3-yaml is not installed (apt-get install python3-yaml)")
    sys.exit(0)


def flags_of(binary):
    """{BATON_X: default} from `binary --help`, or None when not built."""
    if not binary or not os.access(binary, os.X_OK):
        return None
    out = subprocess.run([binary, "--help"], capture_output=True, text=True,
                         timeout=30).stdout
    return dict(re.findall(r"\[env (BATON_[A-Z0-9_]+); default ([^;\]]*)", out))


def docs_in(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def parse_duration_s(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", text)
    mult = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 0.001}[m.group(2)]
    return int(m.group(1)) * mult


def meson_version():
    with open(os.path.join(SRC, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


VERSION = meson_version()
IMAGE = "baton:" + VERSION

# ---- the daemons' flags, from the built binaries ----
router_flags = flags_of(os.environ.get("BATON_ROUTER_BIN") or
                        os.path.join(BUILD, "router", "baton-router"))
node_flags = {r: flags_of(os.path.join(BUILD, "%s_node" % r, "baton-%s" % r))
              for r in ("prefill", "decode")}
kvstore_flags = flags_of(os.path.join(BUILD, "kvstore", "baton-kvstore"))

def check_flags(desc, keys_by_daemon):
    probs, missing = [], []
    for daemon, (keys, flags) in keys_by_daemon.items():
        if flags is None:
            missing.append(daemon)
            continue
        for k in sorted(keys):
            if k.startswith("BATON_") and k not in flags:
                probs.append("%s: %s is not a flag of baton-%s" % (desc, k, daemon))
    if missing and not probs and len(missing) == len(keys_by_daemon):
        skip(desc, "baton-%s not built" % ", baton-".join(missing))
        return
    check(desc + (" (not built, unchecked: %s)" % ", ".join(missing) if missing else ""),
          probs)


# ---- every YAML file parses ----
yaml_files = []
for root, _, files in os.walk(K8S):
    yaml_files += [os.path.join(root, f) for f in files if f.endswith(".yaml")]
problems = []
docs = {}
for p in sorted(yaml_files):
    try:
        docs[p] = docs_in(p)
    except yaml.YAMLError as e:
        problems.append("%s: %s" % (os.path.relpath(p, SRC), e))
check("every YAML file under deploy/k8s parses (%d files)" % len(yaml_files),
      problems)

# ---- kustomizations name files that exist ----
problems = []
for p, ds in docs.items():
    if os.path.basename(p) != "kustomization.yaml":
        continue
    k = ds[0]
    names = list(k.get("resources", [])) + [x["path"] for x in k.get("patches", [])
                                            if "path" in x]
    names += list(k.get("components", []))
    for g in k.get("configMapGenerator", []):
        names += list(g.get("envs", [])) + list(g.get("files", []))
    for r in names:
        if not os.path.exists(os.path.join(os.path.dirname(p), r)):
            problems.append("%s names %s, which does not exist" %
                            (os.path.relpath(p, SRC), r))
check("kustomizations name files that exist", problems)

# ---- rendering ----
kubectl = shutil.which("kubectl")


def render(path):
    r = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return r.stdout


def render_with(overlay, components):
    """An overlay plus components, as an operator's own overlay would add them."""
    tmp = tempfile.mkdtemp(prefix="ctl-deploy.", dir=os.path.join(K8S, "overlays"))
    try:
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            f.write("resources:\n  - ../%s\n" % overlay)
            if components:
                f.write("components:\n")
                for c in components:
                    f.write("  - ../../components/%s\n" % c)
        return render(tmp)
    finally:
        shutil.rmtree(tmp)


def objects(text):
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(text) if o}


RENDERS = [("cpu", []), ("gpu", []), ("cpu", ["kvstore"]), ("cpu", ["tls"]),
           ("cpu", ["kvstore", "tls"]), ("cpu", ["tls", "kvstore"])]
rendered = {}     # "cpu+kvstore+tls" -> {(kind, name): object}
texts = {}
if kubectl is None:
    if CI:
        not_ok("kubectl kustomize", "kubectl is missing: the project's machines have it")
    else:
        skip("kubectl kustomize", "kubectl is not installed")
else:
    problems = []
    for ov, comps in RENDERS:
        label = "+".join([ov] + comps)
        try:
            texts[label] = render_with(ov, comps)
            rendered[label] = objects(texts[label])
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            problems.append("%s: %s" % (label, e))
    check("kubectl kustomize renders %s" % ", ".join(
        "+".join([o] + c) for o, c in RENDERS), problems)
    # what was checked, for a reader (BUILD/deploy-rendered/*.yaml)
    out_dir = os.path.join(BUILD or tempfile.gettempdir(), "deploy-rendered")
    os.makedirs(out_dir, exist_ok=True)
    for label, text in texts.items():
        with open(os.path.join(out_dir, label + ".yaml"), "w") as f:
            f.write(text)

WORKLOADS = ("Deployment", "StatefulSet")


def workloads(objs):
    return {name: o for (kind, name), o in objs.items() if kind in WORKLOADS}


def pod_spec(w):
    return w["spec"]["template"]["spec"]


def pod_labels(w):
    return w["spec"]["template"]["metadata"]["labels"]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def env_of(objs, c):
    """A container's environment as its ConfigMaps and env give it."""
    env = {}
    for ef in c.get("envFrom", []):
        cm = objs.get(("ConfigMap", ef["configMapRef"]["name"]), {})
        env.update(cm.get("data", {}))
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "<from %s>" % list(e.get("valueFrom", {"?": 0}))[0])
    return env


def port(c, name):
    for p in c.get("ports", []):
        if p["name"] == name:
            return p["containerPort"]
    return None


def drain_changes(probe, c):
    """Why a probe's answer changes on `batonctl drain` or SIGTERM, or None.

    A drain sets the node's gRPC health NOT_SERVING and its /readyz 503; only
    /livez ("the process is alive and its loop turns") stays the same."""
    if probe is None:
        return "no probe"
    if "grpc" in probe:
        return "gRPC health (drain sets it NOT_SERVING)"
    if "exec" in probe or "tcpSocket" in probe:
        return "not the /livez check (%s)" % sorted(probe)
    hg = probe.get("httpGet", {})
    if hg.get("path") != "/livez":
        return "HTTP %s, not /livez" % hg.get("path")
    if hg.get("port") not in ("http", port(c, "http")):
        return "not on the http port (%s)" % hg.get("port")
    return None


def env_in(label, name):
    o = rendered[label]
    w = workloads(o)[name]
    return env_of(o, pod_spec(w)["containers"][0])


# ---- rule 1: Kubernetes never undoes a drain ----
if rendered:
    problems = []
    for label, objs in rendered.items():
        for name, w in workloads(objs).items():
            for c in pod_spec(w)["containers"]:
                for pr in ("livenessProbe", "startupProbe"):
                    why = drain_changes(c.get(pr), c)
                    if why:
                        problems.append("%s: %s %s: %s" % (label, name, pr, why))
                rp = c.get("readinessProbe", {}).get("httpGet", {})
                if rp.get("path") != "/readyz" or rp.get("port") not in ("http", port(c, "http")):
                    problems.append("%s: %s readinessProbe is not /readyz on the http port"
                                    % (label, name))
    check("no liveness or startup probe uses anything a drain changes (gRPC health, "
          "/readyz): both are /livez, readiness is /readyz, in every render", problems)

# ---- rule 4 and the rest, on every render ----
if rendered:
    problems = []
    for label, objs in rendered.items():
        wl = workloads(objs)
        hpa_targets = {o["spec"]["scaleTargetRef"]["name"]
                       for (k, nm), o in objs.items() if k == "HorizontalPodAutoscaler"}
        for (kind, name), o in objs.items():
            if kind != "Namespace" and o["metadata"].get("namespace") != "baton":
                problems.append("%s: %s %s is not in namespace baton" % (label, kind, name))
        for name, w in wl.items():
            spec = pod_spec(w)
            if spec.get("automountServiceAccountToken") is not False:
                problems.append("%s: %s mounts a service account token" % (label, name))
            if not selects(w["spec"]["selector"], pod_labels(w)):
                problems.append("%s: %s selector does not match its pod labels" % (label, name))
            if name in hpa_targets and "replicas" in w["spec"]:
                problems.append("%s: %s sets replicas under an HPA (every apply scales "
                                "it back)" % (label, name))
            for c in spec["containers"] + spec.get("initContainers", []):
                if c.get("image") != IMAGE or c.get("imagePullPolicy") != "IfNotPresent":
                    problems.append("%s: %s/%s runs %s (%s), not %s (IfNotPresent)" %
                                    (label, name, c["name"], c.get("image"),
                                     c.get("imagePullPolicy"), IMAGE))
                for ef in c.get("envFrom", []):
                    ref = ef["configMapRef"]["name"]
                    if ("ConfigMap", ref) not in objs:
                        problems.append("%s: %s loads a missing ConfigMap %s" % (label, name, ref))
            c = spec["containers"][0]
            env = env_of(objs, c)
            grpc, http = port(c, "grpc"), port(c, "http")
            if str(grpc) != env.get("BATON_GRPC_PORT") or str(http) != env.get("BATON_HTTP_PORT"):
                problems.append("%s: %s ports %s/%s but BATON_GRPC_PORT=%s BATON_HTTP_PORT=%s"
                                % (label, name, grpc, http, env.get("BATON_GRPC_PORT"),
                                   env.get("BATON_HTTP_PORT")))
            drain = parse_duration_s(env.get("BATON_DRAIN_TIMEOUT", "30s"))
            if spec.get("terminationGracePeriodSeconds", 30) < drain + 5:
                problems.append("%s: %s terminationGracePeriodSeconds leaves no room after "
                                "a %ss drain" % (label, name, drain))
        for (kind, name), o in objs.items():
            # a generated ConfigMap is NAME-<10 hash characters>
            if kind == "ConfigMap" and not re.fullmatch(r"baton-[a-z]+-[a-z0-9]{10}", name):
                problems.append("%s: ConfigMap %s has no content hash in its name (edits "
                                "would not roll the pods)" % (label, name))
            if kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
                sel = o["spec"].get("selector") or o["spec"].get("podSelector")
                sel = sel if "matchLabels" in sel else {"matchLabels": sel}
                matched = [wn for wn, w in wl.items() if selects(sel, pod_labels(w))]
                if not matched:
                    problems.append("%s: %s %s selects no pod" % (label, kind, name))
                if kind == "PodDisruptionBudget":
                    for wn in matched:
                        if wn not in hpa_targets and wl[wn]["spec"].get("replicas", 1) <= 1:
                            problems.append("%s: PDB %s covers %s, which runs one replica: "
                                            "it protects nothing or blocks every eviction"
                                            % (label, name, wn))
            if kind == "HorizontalPodAutoscaler":
                if o["spec"]["scaleTargetRef"]["name"] not in wl:
                    problems.append("%s: HPA %s scales a missing workload" % (label, name))
            if kind == "ServiceMonitor":
                for (k2, n2), svc in objs.items():
                    if k2 == "Service" and selects(o["spec"]["selector"], svc["metadata"]["labels"]) \
                            and svc["metadata"]["labels"].get("app.kubernetes.io/component") in \
                            o["spec"]["selector"]["matchExpressions"][0]["values"]:
                        names = [p["name"] for p in svc["spec"]["ports"]]
                        for ep in o["spec"]["endpoints"]:
                            if ep["port"] not in names:
                                problems.append("%s: ServiceMonitor scrapes port %s, Service "
                                                "%s has %s" % (label, ep["port"], n2, names))
    check("every render: namespace baton, no service account token, image %s "
          "(IfNotPresent), hashed ConfigMaps that exist, ports = BATON_*_PORT, grace > "
          "drain, no replicas under an HPA, selectors select, no PDB over one replica"
          % IMAGE, problems)

objs = rendered.get("cpu", {})
if objs:
    problems = []
    want = [("Namespace", "baton"), ("Deployment", "baton-router"),
            ("Deployment", "baton-prefill"), ("Deployment", "baton-decode"),
            ("Service", "baton-router"), ("Service", "baton-router-internal"),
            ("PodDisruptionBudget", "baton-prefill"), ("PodDisruptionBudget", "baton-decode"),
            ("PodDisruptionBudget", "baton-router"),
            ("HorizontalPodAutoscaler", "baton-prefill"),
            ("HorizontalPodAutoscaler", "baton-decode"),
            ("ServiceMonitor", "baton"), ("NetworkPolicy", "baton-router"),
            ("NetworkPolicy", "baton-prefill"), ("NetworkPolicy", "baton-decode")]
    for kind, name in want:
        if (kind, name) not in objs:
            problems.append("no %s %s" % (kind, name))
    cm_names = {o["metadata"]["name"].rsplit("-", 1)[0]
                for (k, nm), o in objs.items() if k == "ConfigMap"}
    for cm in ("baton-common", "baton-router", "baton-node", "baton-prefill", "baton-decode"):
        if cm not in cm_names:
            problems.append("no ConfigMap %s" % cm)
    check("the cpu overlay has every object DESIGN §10 asks for", problems)

    # the routers: two or more, rolled one at a time with a new one first,
    # a budget that keeps one, nodes registered with every router pod
    problems = []
    r = objs[("Deployment", "baton-router")]["spec"]
    st = r.get("strategy", {})
    ru = st.get("rollingUpdate", {})
    if r.get("replicas", 1) < 2:
        problems.append("baton-router runs %s replica(s): a restart stops the "
                        "service" % r.get("replicas", 1))
    if st.get("type") != "RollingUpdate" or str(ru.get("maxUnavailable")) != "0" \
            or str(ru.get("maxSurge")) in ("0", "None"):
        problems.append("baton-router's rollout does not start a new router "
                        "before stopping an old one (%s)" % st)
    pdb = objs.get(("PodDisruptionBudget", "baton-router"), {}).get("spec", {})
    if pdb.get("minAvailable") != 1:
        problems.append("no PDB keeps one router (%s)" % pdb)
    if any(k == "HorizontalPodAutoscaler" and o["spec"]["scaleTargetRef"]["name"] ==
           "baton-router" for (k, nm), o in objs.items()):
        problems.append("an HPA scales the router")
    internal = objs.get(("Service", "baton-router-internal"), {}).get("spec", {})
    if internal.get("clusterIP") != "None" or not internal.get("publishNotReadyAddresses"):
        problems.append("baton-router-internal is not a headless Service with "
                        "not-ready addresses: nodes would register with one "
                        "router, or not with a new one")
    for role in ("prefill", "decode"):
        router_env = env_in("cpu", "baton-" + role).get("BATON_ROUTER", "")
        if "baton-router-internal" not in router_env:
            problems.append("baton-%s registers with %r, not with every router "
                            "pod (baton-router-internal)" % (role, router_env))
    check("two routers, rolled one at a time with the new one first, a PDB "
          "keeping one, every node registered with each (headless Service)",
          problems)

    # each pool scales on its own signal
    problems = []
    for name, hpa in ((n, o) for (k, nm), o in objs.items() if k == "HorizontalPodAutoscaler"):
        for m in hpa["spec"]["metrics"]:
            if m["type"] == "Resource":
                continue
            body = m.get(m["type"][0].lower() + m["type"][1:], {})
            metric = body.get("metric", {}).get("name", "")
            if m["type"] != "Pods" or not metric.startswith("baton_node_"):
                problems.append("HPA %s scales on %s %s, not on its own pods' metric" %
                                (name, m["type"], metric))
    check("each HPA scales its pool on a metric of the pool's own pods (not the "
          "router's queue, which also fills when decode is short)", problems)

    check_flags("every BATON_* variable of the router pod is a baton-router flag",
                {"router": (env_in("cpu", "baton-router").keys(), router_flags)})
    check_flags("every BATON_* variable of the node pods is a flag of baton-prefill/decode",
                {r: (env_in("cpu", "baton-" + r).keys(), node_flags[r])
                 for r in ("prefill", "decode")})
    if router_flags is None:
        skip("router default ports match the Service", "baton-router not built")
    else:
        problems = []
        if router_flags.get("BATON_GRPC_PORT") != "50051":
            problems.append("baton-router's default --grpc-port is %s, the manifests say 50051"
                            % router_flags.get("BATON_GRPC_PORT"))
        if router_flags.get("BATON_HTTP_PORT") != "8000":
            problems.append("baton-router's default --http-port is not 8000")
        check("router default ports match the Service (50051, 8000)", problems)
    svc = objs[("Service", "baton-router")]["spec"]["ports"]
    problems = []
    if sorted((p["name"], p["port"]) for p in svc) != [("grpc", 50051), ("http", 8000)]:
        problems.append("Service baton-router must expose http 8000 and grpc 50051")
    if not objs[("Service", "baton-router-internal")]["spec"].get("publishNotReadyAddresses"):
        problems.append("baton-router-internal must publish routers that are not ready")
    for name in ("baton-router", "baton-prefill", "baton-decode"):
        spec = pod_spec(objs[("Deployment", name)])
        ic = spec.get("initContainers", [])
        model = env_in("cpu", name).get("BATON_MODEL")
        cmd = ic[0]["command"] if ic else []
        if cmd[:2] != ["baton-mkmodel", "builtin"] or cmd[-1] != model:
            problems.append("%s: no init container writing %s (%s)" % (name, model, cmd))
        if len(spec["containers"]) != 1:
            problems.append("%s: a patch added a container" % name)
    check("cpu: the router's Services, an init container writing the built-in model",
          problems)

# ---- gpu ----
objs = rendered.get("gpu", {})
if objs:
    problems = []
    for name in ("baton-router", "baton-prefill", "baton-decode"):
        spec = pod_spec(objs[("Deployment", name)])
        vols = {v["name"]: v for v in spec["volumes"]}
        if vols["models"].get("persistentVolumeClaim", {}).get("claimName") != \
                "baton-models" or "emptyDir" in vols["models"]:
            problems.append("%s: models volume is not the PVC" % name)
        if name != "baton-router":
            lim = spec["containers"][0]["resources"]["limits"]
            if lim.get("nvidia.com/gpu") != "1":
                problems.append("%s: no nvidia.com/gpu limit" % name)
        env = env_of(objs, spec["containers"][0])
        if env.get("BATON_MODEL") != "/models/model":
            problems.append("%s: BATON_MODEL is %s" % (name, env.get("BATON_MODEL")))
    check("gpu: models from the PVC, one GPU per node pod, the model's path merged "
          "into the generated ConfigMap", problems)

# ---- the kvstore component: optional, wired to the router and the nodes ----
objs = rendered.get("cpu+kvstore", {})
if objs:
    problems = []
    for ov in ("cpu", "gpu"):
        if ("StatefulSet", "baton-kvstore") in rendered.get(ov, {}):
            problems.append("overlay %s runs the kvstore: it stays an optional component" % ov)
    sts = objs.get(("StatefulSet", "baton-kvstore"))
    kv_env, node_env = {}, {}
    if sts is None or not sts["spec"].get("volumeClaimTemplates"):
        problems.append("no kvstore StatefulSet with a volumeClaimTemplate (disk tier)")
    else:
        kv_env = env_of(objs, pod_spec(sts)["containers"][0])
        node_env = env_of(objs, pod_spec(objs[("Deployment", "baton-prefill")])["containers"][0])
        if not kv_env.get("BATON_ROUTER", "").endswith(":50051"):
            problems.append("kvstore: BATON_ROUTER is not the router's registry port")
        adv = kv_env.get("BATON_ADVERTISE", "").replace("$(POD_NAME)", "baton-kvstore-0")
        if node_env.get("BATON_KVSTORE") != adv:
            problems.append("the nodes' BATON_KVSTORE (%s) is not the kvstore's advertised "
                            "target (%s)" % (node_env.get("BATON_KVSTORE"), adv))
    check("kvstore: StatefulSet with a disk-tier PVC, registered with the router, "
          "the nodes' BATON_KVSTORE, in an optional component only", problems)
    # it loads baton-common for logs, drain and TLS; the model keys there are
    # for the router and the nodes (a daemon ignores variables it has no flag for)
    check_flags("every BATON_* variable of the kvstore pod is a baton-kvstore flag "
                "(but baton-common's model keys)",
                {"kvstore": ([k for k in kv_env if k not in ("BATON_MODEL",
                                                             "BATON_SERVED_MODEL_NAME")],
                             kvstore_flags)})
    check_flags("the kvstore component's node variables are flags of baton-prefill/decode",
                {r: (node_env.keys(), node_flags[r]) for r in ("prefill", "decode")})

# ---- the tls component, before or after the kvstore ----
if "cpu+kvstore+tls" in rendered and "cpu+tls+kvstore" in rendered:
    problems = []
    if texts["cpu+kvstore+tls"] != texts["cpu+tls+kvstore"]:
        problems.append("the two orders render differently")
    for label in ("cpu+tls", "cpu+kvstore+tls", "cpu+tls+kvstore"):
        objs = rendered[label]
        for name, w in workloads(objs).items():
            spec = pod_spec(w)
            c = spec["containers"][0]
            env = env_of(objs, c)
            if env.get("BATON_INSECURE") != "false" or \
                    not env.get("BATON_TLS_CERT", "").startswith("/etc/baton/tls/"):
                problems.append("%s: %s has no TLS flags (INSECURE=%s)" %
                                (label, name, env.get("BATON_INSECURE")))
            for pr in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "grpc" in c.get(pr, {}):
                    problems.append("%s: %s %s is a gRPC probe on a TLS port" % (label, name, pr))
            vols = {v["name"]: v for v in spec["volumes"]}
            sec = vols.get("tls", {}).get("secret", {})
            if sec.get("secretName") != "baton-tls" or sec.get("optional") is not False:
                problems.append("%s: %s: the baton-tls secret is not required (%s)"
                                % (label, name, sec))
            if not any(m.get("mountPath") == "/etc/baton/tls" for m in c.get("volumeMounts", [])):
                problems.append("%s: %s: /etc/baton/tls is not mounted" % (label, name))
    check("components/tls before or after components/kvstore: the same render, TLS flags "
          "and a required secret on every pod (the kvstore too), no gRPC probe", problems)
    tls_env = env_of(rendered["cpu+tls"],
                     pod_spec(rendered["cpu+tls"][("Deployment", "baton-router")])["containers"][0])
    tls_keys = [k for k in tls_env if k.startswith("BATON_TLS_") or k == "BATON_INSECURE"]
    check_flags("every BATON_* variable of components/tls is a flag of every daemon",
                {"router": (tls_keys, router_flags),
                 "prefill": (tls_keys, node_flags["prefill"]),
                 "decode": (tls_keys, node_flags["decode"]),
                 "kvstore": (tls_keys, kvstore_flags)})
    base_env = env_in("cpu", "baton-router")
    check("the base asks for plaintext gRPC explicitly (BATON_INSECURE=true)",
          [] if base_env.get("BATON_INSECURE") == "true" else
          ["BATON_INSECURE is %s" % base_env.get("BATON_INSECURE")])

# ---- systemd units ----
units = ["baton-router.service", "baton-prefill@.service", "baton-decode@.service",
         "baton-kvstore.service", "baton.target"]


def unit_keys(path):
    keys = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"^([A-Za-z]+)=(.*)$", line.strip())
            if m:
                keys.setdefault(m.group(1), []).append(m.group(2))
    return keys


problems = []
for u in units[:4]:
    k = unit_keys(os.path.join(SYSTEMD, u))
    for want in ("EnvironmentFile", "ExecStart", "Restart", "KillSignal", "TimeoutStopSec",
                 "NoNewPrivileges", "ProtectSystem", "PrivateTmp"):
        if want not in k:
            problems.append("%s: no %s=" % (u, want))
    if k.get("Restart") != ["on-failure"] or k.get("KillSignal") != ["SIGTERM"]:
        problems.append("%s: wants Restart=on-failure and KillSignal=SIGTERM" % u)
    # ordering waits for a daemon that serves (sd_notify READY=1, which
    # needs an AF_UNIX datagram socket)
    if k.get("Type") != ["notify"] or k.get("NotifyAccess") != ["main"]:
        problems.append("%s: Type=%s NotifyAccess=%s, wants notify/main" %
                        (u, k.get("Type"), k.get("NotifyAccess")))
    if "AF_UNIX" not in " ".join(k.get("RestrictAddressFamilies", ["AF_UNIX"])):
        problems.append("%s: RestrictAddressFamilies leaves out AF_UNIX (sd_notify)" % u)
    if "@system-service" not in k.get("SystemCallFilter", []):
        problems.append("%s: no SystemCallFilter=@system-service" % u)
    daemon = re.match(r"baton-([a-z]+)", u).group(1)
    if "/etc/baton/%s.env" % daemon not in k.get("EnvironmentFile", []):
        problems.append("%s: EnvironmentFile is not /etc/baton/%s.env" % (u, daemon))
    envf = os.path.join(SYSTEMD, "env", daemon + ".env")
    env = dict(re.findall(r"^(BATON_[A-Z_]+)=(.*)$", open(envf).read(), re.M))
    drain = parse_duration_s(env.get("BATON_DRAIN_TIMEOUT", "30s"))
    stop = parse_duration_s(k.get("TimeoutStopSec", ["0s"])[0])
    if stop < drain + 5:
        problems.append("%s: TimeoutStopSec=%ss leaves no room after a %ss drain" %
                        (u, stop, drain))
check("systemd units: Type=notify, env file, restart, SIGTERM with room for the drain, "
      "hardening with SystemCallFilter=@system-service",
      problems)



def env_file_keys(daemon):
    with open(os.path.join(SYSTEMD, "env", daemon + ".env")) as f:
        return re.findall(r"^#?(BATON_[A-Z_]+)=", f.read(), re.M)


check_flags("every BATON_* variable of the example env files is a flag of its daemon",
            {"router": (env_file_keys("router"), router_flags),
             "prefill": (env_file_keys("prefill"), node_flags["prefill"]),
             "decode": (env_file_keys("decode"), node_flags["decode"]),
             "kvstore": (env_file_keys("kvstore"), kvstore_flags)})

analyze = shutil.which("systemd-analyze")
if analyze is None:
    skip("systemd-analyze verify", "systemd-analyze is not installed")
else:
    tmp = tempfile.mkdtemp(prefix="ctl-units.")
    try:
        for u in units:
            text = open(os.path.join(SYSTEMD, u)).read()
            # the binaries are not installed here: verify the units, not that
            text = re.sub(r"/usr/local/bin/baton-[a-z]+", "/bin/true", text)
            with open(os.path.join(tmp, u), "w") as f:
                f.write(text)
        args = [os.path.join(tmp, u) for u in units if "@" not in u]
        args += [os.path.join(tmp, u.replace("@", "@0")) for u in units if "@" in u]
        r = subprocess.run([analyze, "verify"] + args, capture_output=True, text=True,
                           timeout=120, cwd=tmp)
        # verify exits 0 on unknown keys and bad values; its words are the verdict
        lines = [l for l in (r.stdout + r.stderr).splitlines() if tmp in l]
        check("systemd-analyze verify (%d units)" % len(units),
              lines + (["exit %d: %s" % (r.returncode, r.stderr)] if r.returncode else []))
    finally:
        shutil.rmtree(tmp)

print("1..%d" % n)
sys.exit(1 if failed else 0)
