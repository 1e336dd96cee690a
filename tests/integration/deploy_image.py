#!/usr/bin/python3
"""deploy/image/Containerfile cannot drift from the build (TAP).

The runtime stage installs exactly the Debian packages that hold the shared
libraries the built binaries link (`ldd` of each, mapped to packages with
`dpkg -S`): one missing and a daemon would not start in the image, one too
many and the image carries what it does not use. Each of those packages
must come with scripts/deps.sh's build list (the -dev packages depend on
them), which the build stage runs; the image ships every daemon and tool
the manifests start. Environment: BATON_SOURCE_ROOT, BATON_BUILD_ROOT.
"""
import os
import re
import subprocess
import sys

SRC = os.environ.get("BATON_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BATON_BUILD_ROOT") or os.path.join(SRC, "build")
CONTAINERFILE = os.path.join(SRC, "deploy", "image", "Containerfile")
# what the image ships, as built here (name in the image: basename)
BINARIES = ["router/baton-router", "prefill_node/baton-prefill",
            "decode_node/baton-decode", "kvstore/baton-kvstore", "cli/batonctl",
            "tools/baton-mkmodel"]

n = 0
failed = 0


def check(desc, problems):
    global n, failed
    n += 1
    if problems:
        failed += 1
        print("not ok %d - %s" % (n, desc))
        for p in problems:
            for line in str(p).splitlines():
                print("# " + line)
    else:
        print("ok %d - %s" % (n, desc))


def stages(text):
    """[(FROM line, [instructions])], continuation lines joined."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def apt_installs(instructions):
    pkgs = []
    for ins in instructions:
        for m in re.finditer(r"apt-get install ([^&;]*)", ins):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def deps_sh_packages():
    text = open(os.path.join(SRC, "scripts", "deps.sh")).read()
    body = re.search(r"PACKAGES=\((.*?)\n\)", text, re.S).group(1)
    words = []
    for line in body.splitlines():
        words += line.split("#")[0].split()
    return words


def packages_of(paths):
    """{library path: Debian package} in one dpkg-query call (usrmerge: a
    library may be known to dpkg under /lib or /usr/lib, by link or target)."""
    cands = {}
    for path in paths:
        c = [path, os.path.realpath(path)]
        c += [p[4:] if p.startswith("/usr/") else "/usr" + p for p in list(c)]
        cands[path] = c
    allc = sorted({c for cs in cands.values() for c in cs})
    out = subprocess.run(["dpkg-query", "-S"] + allc, capture_output=True, text=True,
                         timeout=120).stdout
    owner = {}
    for line in out.splitlines():
        pkg, _, f = line.partition(": ")
        owner[f.strip()] = pkg.split(":")[0].split(",")[0].strip()
    return {path: next((owner[c] for c in cs if c in owner), None)
            for path, cs in cands.items()}


SANITIZER_RUNTIME = re.compile(r"lib(asan|ubsan|tsan|lsan)\.so")


def linked_libraries(binary):
    out = subprocess.run(["ldd", binary], capture_output=True, text=True,
                         timeout=60).stdout
    libs = []
    for line in out.splitlines():
        m = re.match(r"\s*\S+ => (/\S+)", line) or re.match(r"\s*(/\S+) \(", line)
        if m:
            libs.append(m.group(1))
        elif "not found" in line:
            libs.append("NOT FOUND: " + line.strip())
    return libs


def depends_closure(roots):
    """Every installed package reachable from roots by Depends/Pre-Depends."""
    out = subprocess.run(["dpkg-query", "-W", "-f",
                          "${Package}\t${Depends}, ${Pre-Depends}\t${Provides}\n"],
                         capture_output=True, text=True).stdout
    deps, provides = {}, {}
    for line in out.splitlines():
        name, dep, prov = (line.split("\t") + ["", ""])[:3]
        alts = []
        for d in dep.split(","):
            names = [re.split(r"[ (:]", a.strip())[0] for a in d.split("|") if a.strip()]
            alts += names
        deps[name] = alts
        for p in prov.split(","):
            p = re.split(r"[ (:]", p.strip())[0]
            if p:
                provides.setdefault(p, []).append(name)
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        for q in [p] + provides.get(p, []):
            if q in seen or q not in deps:
                continue
            seen.add(q)
            todo += deps[q]
    return seen


text = open(CONTAINERFILE).read()
st = stages(text)
problems = []
if len(st) < 2:
    problems.append("wants a build stage and a runtime stage, has %d stage(s)" % len(st))
else:
    for from_line, _ in st:
        if not re.search(r"debian:12(\b|-)", from_line):
            problems.append("not a Debian 12 base: %s" % from_line)
    build_ins = " ".join(st[0][1])
    if "scripts/deps.sh" not in build_ins:
        problems.append("the build stage does not run scripts/deps.sh")
    if "meson setup" not in build_ins or "ninja" not in build_ins:
        problems.append("the build stage does not build with meson and ninja")
    run_ins = st[-1][1]
    users = [i.split(None, 1)[1] for i in run_ins if i.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] != "65532":
        problems.append("the runtime stage does not run as UID 65532 (USER %s)" % users)
    if any("deps.sh" in i or "meson" in i for i in run_ins):
        problems.append("the runtime stage builds or installs build packages")
check("Containerfile: Debian 12, a build stage with scripts/deps.sh + meson/ninja, "
      "a runtime stage as UID 65532", problems)

runtime = apt_installs(st[-1][1]) if st else []
check("the runtime package list is sorted, one a line, without duplicates",
      [] if runtime == sorted(set(runtime)) else ["got %s" % runtime])

missing_bins = [b for b in BINARIES if not os.access(os.path.join(BUILD, b), os.X_OK)]
if missing_bins:
    print("ok %d # SKIP not built: %s" % (n + 1, ", ".join(missing_bins)))
    n += 1
else:
    need = {}          # package -> [library, ...]
    problems = []
    libs = {}          # library -> the binaries that link it
    for b in BINARIES:
        for lib in linked_libraries(os.path.join(BUILD, b)):
            if SANITIZER_RUNTIME.match(os.path.basename(lib)):
                continue   # a sanitizer build's (make asan): the image never is one
            if lib.startswith("NOT FOUND"):
                problems.append("%s: %s" % (b, lib))
            else:
                libs.setdefault(lib, []).append(b)
    for lib, pkg in packages_of(sorted(libs)).items():
        if pkg is None:
            problems.append("%s links %s, which no Debian package holds" %
                            (libs[lib][0], lib))
        else:
            need.setdefault(pkg, set()).add(os.path.basename(lib))
    for pkg in sorted(set(need) - set(runtime)):
        problems.append("%s (%s) is linked but not in the runtime stage" %
                        (pkg, ", ".join(sorted(need[pkg])[:3])))
    for pkg in sorted(set(runtime) - set(need)):
        problems.append("%s is in the runtime stage but no binary links it" % pkg)
    check("the runtime stage installs exactly the packages of the libraries the "
          "binaries link (ldd + dpkg -S: %d packages)" % len(need), problems)

    closure = depends_closure(deps_sh_packages())
    check("every runtime package comes with scripts/deps.sh's build list",
          ["%s is not a dependency of any package of scripts/deps.sh" % p
           for p in runtime if p not in closure])

shipped = []
for ins in (st[-1][1] if st else []):
    if ins.upper().startswith("COPY") and "/usr/local/bin" in ins:
        shipped.append(ins)
build_ins = " ".join(st[0][1]) if st else ""
problems = []
if not shipped:
    problems.append("the runtime stage copies nothing into /usr/local/bin")
installed = subprocess.run(["meson", "introspect", "--installed", BUILD],
                           capture_output=True, text=True)
inst_names = set(os.path.basename(p) for p in
                 re.findall(r'"(/[^"]+)"', installed.stdout)) if installed.returncode == 0 else None
for b in BINARIES:
    name = os.path.basename(b)
    if inst_names is not None and name not in inst_names and name not in build_ins:
        problems.append("%s is neither installed by meson nor copied by the build stage"
                        % name)
commands = set()
for root, _, files in os.walk(os.path.join(SRC, "deploy", "k8s")):
    for f in files:
        if f.endswith(".yaml"):
            commands |= set(re.findall(r'command: \["(baton[a-z-]*)"',
                                       open(os.path.join(root, f)).read()))
for c in sorted(commands):
    if c not in [os.path.basename(b) for b in BINARIES]:
        problems.append("deploy/k8s runs %s, which the image does not ship" % c)
check("the image ships every daemon and tool deploy/k8s starts (%s)" %
      ", ".join(sorted(commands)), problems)

print("1..%d" % n)
sys.exit(1 if failed else 0)
