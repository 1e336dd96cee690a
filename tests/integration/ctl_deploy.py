#!/usr/bin/python3
"""deploy/k8s and deploy/systemd hold together (TAP).

Parses every YAML file, checks the structure of the base (kinds, names,
selectors, probes, ports) against the daemons' own flags (`--help` of the
built binaries), renders the overlays with `kubectl kustomize` when kubectl
is installed, and runs `systemd-analyze verify` on the units when systemd
is. Environment: BATON_SOURCE_ROOT, BATON_ROUTER_BIN, BATON_BUILD_ROOT.
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
    for r in names:
        if not os.path.exists(os.path.join(os.path.dirname(p), r)):
            problems.append("%s names %s, which does not exist" %
                            (os.path.relpath(p, SRC), r))
check("kustomizations name files that exist", problems)

# ---- the base, object by object ----
base_dir = os.path.join(K8S, "base")
base = []
for r in docs[os.path.join(base_dir, "kustomization.yaml")][0]["resources"]:
    base += docs[os.path.join(base_dir, r)]
objs = {(o["kind"], o["metadata"]["name"]): o for o in base}

problems = []
for kind, name in [("Namespace", "baton"), ("Deployment", "baton-router"),
                   ("Deployment", "baton-prefill"), ("Deployment", "baton-decode"),
                   ("Service", "baton-router"), ("Service", "baton-router-internal"),
                   ("ConfigMap", "baton-common"), ("ConfigMap", "baton-router"),
                   ("ConfigMap", "baton-node"), ("PodDisruptionBudget", "baton-router"),
                   ("PodDisruptionBudget", "baton-prefill"),
                   ("PodDisruptionBudget", "baton-decode"),
                   ("HorizontalPodAutoscaler", "baton-prefill"),
                   ("HorizontalPodAutoscaler", "baton-decode"),
                   ("ServiceMonitor", "baton"), ("NetworkPolicy", "baton-router"),
                   ("NetworkPolicy", "baton-prefill"), ("NetworkPolicy", "baton-decode")]:
    if (kind, name) not in objs:
        problems.append("no %s %s" % (kind, name))
check("the base has every object DESIGN §10 asks for", problems)

deps = {name: o for (kind, name), o in objs.items() if kind == "Deployment"}
cms = {name: o.get("data", {}) for (kind, name), o in objs.items() if kind == "ConfigMap"}


def pod_labels(dep):
    return dep["spec"]["template"]["metadata"]["labels"]


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def container(dep):
    return dep["spec"]["template"]["spec"]["containers"][0]


def env_of(dep):
    """The container's environment as the ConfigMaps and env give it."""
    env = {}
    c = container(dep)
    for ef in c.get("envFrom", []):
        env.update(cms.get(ef["configMapRef"]["name"], {}))
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", "<from %s>" % list(e.get("valueFrom", {}))[0])
    return env


def port(c, name):
    for p in c.get("ports", []):
        if p["name"] == name:
            return p["containerPort"]
    return None


problems = []
for name, d in deps.items():
    if not selects(d["spec"]["selector"], pod_labels(d)):
        problems.append("%s: selector does not match its pod labels" % name)
    for ef in container(d).get("envFrom", []):
        if ef["configMapRef"]["name"] not in cms:
            problems.append("%s: envFrom names a missing ConfigMap %s" %
                            (name, ef["configMapRef"]["name"]))
for (kind, name), o in objs.items():
    if kind in ("Service", "PodDisruptionBudget", "NetworkPolicy"):
        sel = o["spec"].get("selector") or o["spec"].get("podSelector")
        sel = sel if "matchLabels" in sel else {"matchLabels": sel}
        if not any(selects(sel, pod_labels(d)) for d in deps.values()):
            problems.append("%s %s selects no pod" % (kind, name))
    if kind == "ServiceMonitor":
        for (k2, n2), svc in objs.items():
            if k2 == "Service" and selects(o["spec"]["selector"], svc["metadata"]["labels"]) \
                    and svc["metadata"]["labels"].get("app.kubernetes.io/component") in \
                    o["spec"]["selector"]["matchExpressions"][0]["values"]:
                names = [p["name"] for p in svc["spec"]["ports"]]
                for ep in o["spec"]["endpoints"]:
                    if ep["port"] not in names:
                        problems.append("ServiceMonitor scrapes port %s, Service %s has %s"
                                        % (ep["port"], n2, names))
    if kind == "HorizontalPodAutoscaler":
        if o["spec"]["scaleTargetRef"]["name"] not in deps:
            problems.append("HPA %s scales a missing Deployment" % name)
check("selectors, ConfigMap references and HPA targets resolve", problems)

# ---- probes and ports against the ConfigMaps and the binaries' flags ----
router_flags = flags_of(os.environ.get("BATON_ROUTER_BIN") or
                        os.path.join(BUILD, "router", "baton-router"))
node_bins = {r: os.path.join(BUILD, "%s_node" % r, "baton-%s" % r)
             for r in ("prefill", "decode")}
node_flags = {r: flags_of(b) for r, b in node_bins.items()}
kvstore_flags = flags_of(os.path.join(BUILD, "kvstore", "baton-kvstore"))

problems = []
for name, d in deps.items():
    c = container(d)
    env = env_of(d)
    grpc, http = port(c, "grpc"), port(c, "http")
    if grpc is None or http is None:
        problems.append("%s: needs container ports named grpc and http" % name)
        continue
    if str(grpc) != env.get("BATON_GRPC_PORT") or str(http) != env.get("BATON_HTTP_PORT"):
        problems.append("%s: ports %s/%s but BATON_GRPC_PORT=%s BATON_HTTP_PORT=%s" %
                        (name, grpc, http, env.get("BATON_GRPC_PORT"),
                         env.get("BATON_HTTP_PORT")))
    for probe in ("startupProbe", "livenessProbe"):
        if c.get(probe, {}).get("grpc", {}).get("port") != grpc:
            problems.append("%s: %s is not gRPC health on port %s" % (name, probe, grpc))
    rp = c.get("readinessProbe", {}).get("httpGet", {})
    if rp.get("path") != "/readyz" or rp.get("port") not in ("http", http):
        problems.append("%s: readinessProbe is not HTTP /readyz on the http port" % name)
    drain = parse_duration_s(env.get("BATON_DRAIN_TIMEOUT", "30s"))
    grace = d["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30)
    if grace < drain + 5:
        problems.append("%s: terminationGracePeriodSeconds %s leaves no room after a "
                        "%ss drain" % (name, grace, drain))
    if c["image"] != "baton:latest":
        problems.append("%s: image %s" % (name, c["image"]))
svc = objs[("Service", "baton-router")]["spec"]["ports"]
if sorted((p["name"], p["port"]) for p in svc) != [("grpc", 50051), ("http", 8000)]:
    problems.append("Service baton-router must expose http 8000 and grpc 50051")
if not objs[("Service", "baton-router-internal")]["spec"].get("publishNotReadyAddresses"):
    problems.append("baton-router-internal must publish routers that are not ready")
check("probes are gRPC health + /readyz on the ports the daemons are told to use",
      problems)

def check_flags(desc, keys_by_daemon):
    probs, missing = [], []
    for daemon, (keys, flags) in keys_by_daemon.items():
        if flags is None:
            missing.append(daemon)
            continue
        for k in sorted(keys):
            if k.startswith("BATON_") and k not in flags:
                probs.append("%s: %s is not a flag of baton-%s" % (desc, k, daemon))
    if missing and not probs:
        if len(missing) == len(keys_by_daemon):
            skip(desc, "baton-%s not built" % ", baton-".join(missing))
            return
    check(desc + (" (not built, unchecked: %s)" % ", ".join(missing) if missing else ""),
          probs)


router_env = env_of(deps["baton-router"])
check_flags("every BATON_* variable of the router pod is a baton-router flag",
            {"router": (router_env.keys(), router_flags)})
check_flags("every BATON_* variable of the node pods is a flag of baton-prefill/decode",
            {r: (env_of(deps["baton-" + r]).keys(), node_flags[r])
             for r in ("prefill", "decode")})
problems = []
if router_flags is not None and router_flags.get("BATON_GRPC_PORT") != "50051":
    problems.append("baton-router's default --grpc-port is %s, the manifests say 50051"
                    % router_flags.get("BATON_GRPC_PORT"))
if router_flags is not None and router_flags.get("BATON_HTTP_PORT") != "8000":
    problems.append("baton-router's default --http-port is not 8000")
if router_flags is None:
    skip("router default ports match the Service", "baton-router not built")
else:
    check("router default ports match the Service (50051, 8000)", problems)

# ---- the kvstore component: optional, wired to the router and the nodes ----
problems = []
kv_dir = os.path.join(K8S, "components", "kvstore")
comp = docs[os.path.join(kv_dir, "kustomization.yaml")][0]
if comp.get("kind") != "Component":
    problems.append("components/kvstore is not a kustomize Component")
kv = docs[os.path.join(kv_dir, "kvstore.yaml")]
sts = [o for o in kv if o["kind"] == "StatefulSet"]
if not sts or not sts[0]["spec"].get("volumeClaimTemplates"):
    problems.append("no kvstore StatefulSet with a volumeClaimTemplate (disk tier)")
for ov in ("cpu", "gpu"):
    k = docs[os.path.join(K8S, "overlays", ov, "kustomization.yaml")][0]
    if "../../components/kvstore" in (k.get("components") or []):
        problems.append("overlay %s includes the kvstore: it stays an optional component" % ov)
kv_env = {}
kv_node_env = {}
if sts:
    c = sts[0]["spec"]["template"]["spec"]["containers"][0]
    kv_env = {e["name"]: e["value"] if "value" in e
              else "<from %s>" % list(e.get("valueFrom", {"?": 0}))[0]
              for e in c.get("env", [])}
    if port(c, "grpc") != int(kv_env.get("BATON_GRPC_PORT", 0)) or \
            port(c, "http") != int(kv_env.get("BATON_HTTP_PORT", 0)):
        problems.append("kvstore: container ports differ from BATON_GRPC_PORT/BATON_HTTP_PORT")
    if not kv_env.get("BATON_ROUTER", "").endswith(":50051"):
        problems.append("kvstore: BATON_ROUTER is not the router's registry port")
for p in comp.get("patches", []):
    for d in docs[os.path.join(kv_dir, p["path"])]:
        if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "baton-node":
            kv_node_env = d.get("data", {})
adv = kv_env.get("BATON_ADVERTISE", "").replace("$(POD_NAME)", "baton-kvstore-0")
if not kv_node_env.get("BATON_KVSTORE") or kv_node_env.get("BATON_KVSTORE") != adv:
    problems.append("the nodes' BATON_KVSTORE (%s) is not the kvstore's advertised "
                    "target (%s)" % (kv_node_env.get("BATON_KVSTORE"), adv))
check("kvstore: StatefulSet with a disk-tier PVC, registered with the router, "
      "the nodes' BATON_KVSTORE, in an optional component only", problems)
check_flags("every BATON_* variable of the kvstore pod is a baton-kvstore flag",
            {"kvstore": (kv_env.keys(), kvstore_flags)})
check_flags("the kvstore component's node variables are flags of baton-prefill/decode",
            {r: (kv_node_env.keys(), node_flags[r]) for r in ("prefill", "decode")})

# ---- the tls component: its variables are flags of every daemon ----
problems = []
tls_dir = os.path.join(K8S, "components", "tls")
comp = docs[os.path.join(tls_dir, "kustomization.yaml")][0]
if comp.get("kind") != "Component":
    problems.append("components/tls is not a kustomize Component")
tls_env = {}
for d in docs[os.path.join(tls_dir, "tls-env.yaml")]:
    if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == "baton-common":
        tls_env = d.get("data", {})
for want in ("BATON_TLS_CERT", "BATON_TLS_KEY", "BATON_TLS_CA"):
    if not str(tls_env.get(want, "")).startswith("/etc/baton/tls/"):
        problems.append("components/tls: %s is not a file under /etc/baton/tls" % want)
if str(tls_env.get("BATON_INSECURE")) != "false":
    problems.append("components/tls must set BATON_INSECURE to false")
if objs[("ConfigMap", "baton-common")]["data"].get("BATON_INSECURE") != "true":
    problems.append("the base must ask for plaintext gRPC explicitly (BATON_INSECURE)")
check("components/tls sets the TLS flags, the base asks for plaintext explicitly",
      problems)
check_flags("every BATON_* variable of components/tls is a flag of every daemon",
            {"router": (tls_env.keys(), router_flags),
             "prefill": (tls_env.keys(), node_flags["prefill"]),
             "decode": (tls_env.keys(), node_flags["decode"]),
             "kvstore": (tls_env.keys(), kvstore_flags)})

# ---- overlays rendered by kubectl kustomize ----
kubectl = shutil.which("kubectl")


def render(path):
    r = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True,
                       timeout=120)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(r.stdout)
            if o}


if kubectl is None:
    for ov in ("cpu", "gpu", "cpu + kvstore component", "cpu + tls component"):
        skip("kubectl kustomize overlays/%s" % ov, "kubectl is not installed")
else:
    for ov in ("cpu", "gpu"):
        problems = []
        try:
            out = render(os.path.join(K8S, "overlays", ov))
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            not_ok("kubectl kustomize overlays/%s" % ov, e)
            continue
        for (kind, name), o in out.items():
            if o["metadata"].get("namespace", "baton") != "baton" and kind != "Namespace":
                problems.append("%s %s outside namespace baton" % (kind, name))
        for name in ("baton-router", "baton-prefill", "baton-decode"):
            d = out[("Deployment", name)]
            cs = d["spec"]["template"]["spec"]["containers"]
            if len(cs) != 1:
                problems.append("%s: a patch added a container (%s)" %
                                (name, [c["name"] for c in cs]))
            vols = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}
            model = out[("ConfigMap", "baton-common")]["data"]["BATON_MODEL"]
            if ov == "cpu":
                ic = d["spec"]["template"]["spec"].get("initContainers", [])
                cmd = ic[0]["command"] if ic else []
                if cmd[:2] != ["baton-mkmodel", "builtin"] or cmd[-1] != model:
                    problems.append("%s: no init container writing %s (%s)" %
                                    (name, model, cmd))
            else:
                if vols["models"].get("persistentVolumeClaim", {}).get("claimName") != \
                        "baton-models" or "emptyDir" in vols["models"]:
                    problems.append("%s: models volume is not the PVC" % name)
                if name != "baton-router":
                    lim = cs[0]["resources"]["limits"]
                    if lim.get("nvidia.com/gpu") != "1":
                        problems.append("%s: no nvidia.com/gpu limit" % name)
        check("kubectl kustomize overlays/%s renders and keeps its promises" % ov,
              problems)
    tmp = tempfile.mkdtemp(prefix="ctl-deploy.", dir=os.path.join(K8S, "overlays"))
    try:
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            f.write("resources:\n  - ../cpu\ncomponents:\n  - ../../components/kvstore\n")
        out = render(tmp)
        problems = [] if ("StatefulSet", "baton-kvstore") in out else ["no StatefulSet"]
        if not out[("ConfigMap", "baton-node")]["data"].get("BATON_KVSTORE"):
            problems.append("the nodes have no BATON_KVSTORE")
        check("kubectl kustomize overlays/cpu + the kvstore component (nodes' "
              "BATON_KVSTORE set)", problems)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        not_ok("kubectl kustomize overlays/cpu + the kvstore component", e)
    finally:
        shutil.rmtree(tmp)
    tmp = tempfile.mkdtemp(prefix="ctl-deploy.", dir=os.path.join(K8S, "overlays"))
    try:
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            f.write("resources:\n  - ../cpu\ncomponents:\n  - ../../components/kvstore\n"
                    "  - ../../components/tls\n")
        out = render(tmp)
        problems = []
        if out[("ConfigMap", "baton-common")]["data"].get("BATON_INSECURE") != "false":
            problems.append("BATON_INSECURE is not false")
        for kind, name in (("Deployment", "baton-router"), ("Deployment", "baton-prefill"),
                           ("Deployment", "baton-decode"), ("StatefulSet", "baton-kvstore")):
            spec = out[(kind, name)]["spec"]["template"]["spec"]
            c = spec["containers"][0]
            for probe in ("startupProbe", "livenessProbe"):
                pr = c.get(probe, {})
                if "grpc" in pr or pr.get("httpGet", {}).get("path") != "/healthz":
                    problems.append("%s: %s is not HTTP /healthz (%s)" % (name, probe, pr))
            vols = {v["name"]: v for v in spec["volumes"]}
            sec = vols.get("tls", {}).get("secret", {})
            if sec.get("secretName") != "baton-tls" or sec.get("optional") is not False:
                problems.append("%s: the baton-tls secret is not required (%s)" % (name, sec))
            if not any(m.get("mountPath") == "/etc/baton/tls" for m in c.get("volumeMounts", [])):
                problems.append("%s: /etc/baton/tls is not mounted" % name)
        check("kubectl kustomize overlays/cpu + the kvstore and tls components: "
              "secret required, HTTP probes (kvstore too)", problems)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        not_ok("kubectl kustomize overlays/cpu + the tls component", e)
    finally:
        shutil.rmtree(tmp)

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
check("systemd units: env file, restart, SIGTERM with room for the drain, hardening",
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
