#!/usr/bin/python3
"""Unknown fields in rendered Kubernetes manifests (TAP).

The OpenAPI schemas the schema check validates against allow any extra
field (Kubernetes' own schemas set no additionalProperties), so a misspelt
field (`replica:`, `readinesProbe.periodSecond`) passes them and the API
server would drop it silently. This walks every object against the field
names of the Kubernetes API types as Debian's python3-kubernetes package
has them: each model class maps its fields to their JSON names
(`attribute_map`) and their types (`openapi_types`), generated from the
API's Go types and their json tags. Nothing is fetched; the names come
from the installed package at test time.

  deploy_fields.py FILE.yaml...      (python3-yaml, python3-kubernetes)

python3-kubernetes 22 has the API of Kubernetes 1.22: autoscaling/v2
(1.23) is checked against autoscaling/v2beta2, whose fields it kept.
Kinds that are not Kubernetes' own (ServiceMonitor) are not in the package
and are skipped, said so in the output.
"""
import difflib
import re
import sys

import yaml

try:
    import kubernetes.client.models as models
except ImportError as e:  # deploy_schema.sh checks first: skip or fail
    print("deploy_fields.py: python3-kubernetes is not installed (%s)" % e, file=sys.stderr)
    sys.exit(2)

# apiVersion whose types the package has under another version
SAME_FIELDS_AS = {"autoscaling/v2": "v2beta2"}


def model_for(api_version, kind):
    """The package's class for (apiVersion, kind), or None."""
    version = SAME_FIELDS_AS.get(api_version, api_version.rsplit("/", 1)[-1])
    return getattr(models, version[:1].upper() + version[1:] + kind, None)


def inner(type_name):
    """'list[V1Container]' -> ('list', 'V1Container'); 'dict(str, V1X)' ->
    ('dict', 'V1X'); 'V1X' -> ('one', 'V1X')."""
    m = re.match(r"list\[(.*)\]$", type_name)
    if m:
        return "list", m.group(1)
    m = re.match(r"dict\(str, (.*)\)$", type_name)
    if m:
        return "dict", m.group(1)
    return "one", type_name


def walk(value, type_name, path, problems):
    shape, name = inner(type_name)
    if shape == "list":
        for i, v in enumerate(value if isinstance(value, list) else []):
            walk(v, name, "%s[%d]" % (path, i), problems)
        return
    if shape == "dict":
        for k, v in (value.items() if isinstance(value, dict) else []):
            walk(v, name, "%s.%s" % (path, k), problems)
        return
    cls = getattr(models, name, None)
    if cls is None or not isinstance(value, dict):
        return     # str, int, bool, object (int-or-string, free-form), ...
    by_json = {j: py for py, j in cls.attribute_map.items()}
    for key, v in value.items():
        if key not in by_json:
            near = difflib.get_close_matches(key, list(by_json), 1)
            problems.append("%s.%s: no such field in %s%s" % (
                path, key, name, " (did you mean %s?)" % near[0] if near else ""))
        else:
            walk(v, cls.openapi_types[by_json[key]], "%s.%s" % (path, key), problems)


def main(files):
    n = failed = 0
    for f in files:
        problems, checked, skipped = [], 0, set()
        with open(f) as fh:
            docs = [d for d in yaml.safe_load_all(fh) if d]
        for d in docs:
            cls = model_for(d.get("apiVersion", ""), d.get("kind", ""))
            what = "%s/%s" % (d.get("kind"), (d.get("metadata") or {}).get("name"))
            if cls is None:
                skipped.add("%s %s" % (d.get("apiVersion"), d.get("kind")))
                continue
            checked += 1
            walk(d, cls.__name__, what, problems)
        n += 1
        name = f.rsplit("/", 1)[-1]
        desc = "%s: %d objects have only known fields" % (name, checked)
        if skipped:
            desc += " (not in python3-kubernetes, skipped: %s)" % ", ".join(sorted(skipped))
        if problems:
            failed += 1
            print("not ok %d - %s" % (n, desc))
            for p in problems:
                print("# " + p)
        else:
            print("ok %d - %s" % (n, desc))
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
