#!/usr/bin/env bash
# Offline schema check of deploy/k8s (TAP): `kubectl kustomize` renders the
# overlays and the components (both orders), and every object is validated
# against the Kubernetes OpenAPI schemas that the npm package
# kubernetes-models compiles in (plus the prometheus-operator CRDs), by
# deploy_schema.mjs. The packages come from the npm registry once, into the
# build tree (as the openai client of tests/interop does); after that
# nothing is fetched. Those schemas allow any extra field, so every object
# is also walked for unknown (misspelt) fields against the field names of
# the Kubernetes API types in Debian's python3-kubernetes
# (deploy_fields.py), and a copy with two misspelt fields must fail that.
set -uo pipefail
SRC=${BATON_SOURCE_ROOT:?}
BUILD=${BATON_BUILD_ROOT:?}
K8S=$SRC/deploy/k8s
skip_or_fail() {   # under CI a missing tool fails; elsewhere it skips
  if [ "${CI:-}" = true ]; then echo "not ok 1 - $1"; sed 's/^/# /' "${2:-/dev/null}"; exit 1; fi
  echo "1..0 # SKIP $1"; exit 0
}
command -v kubectl >/dev/null || skip_or_fail "kubectl is not installed"
command -v node >/dev/null || skip_or_fail "node is not installed"
/usr/bin/python3 -c 'import kubernetes.client.models, yaml' 2>/dev/null ||
  skip_or_fail "python3-kubernetes or python3-yaml is not installed (scripts/deps.sh)"
NPM_DIR=$BUILD/npm-k8s
if [ ! -d "$NPM_DIR/node_modules/kubernetes-models" ] ||
   [ ! -d "$NPM_DIR/node_modules/@kubernetes-models/prometheus-operator" ] ||
   [ ! -d "$NPM_DIR/node_modules/yaml" ]; then
  mkdir -p "$NPM_DIR"
  timeout 300 npm install --silent --no-audit --no-fund --prefix "$NPM_DIR" \
      kubernetes-models@5 @kubernetes-models/prometheus-operator@6 yaml@2 \
      >"$NPM_DIR/install.log" 2>&1 ||
    skip_or_fail "cannot install kubernetes-models from npm (no registry?)" "$NPM_DIR/install.log"
fi
OUT=$(mktemp -d /tmp/deploy-schema.XXXXXX)
TMP=$(mktemp -d "$K8S/overlays/schema.XXXXXX")
trap 'rm -rf "$OUT" "$TMP"' EXIT
render() {   # NAME OVERLAY [COMPONENT...]
  local name=$1 ov=$2; shift 2
  { echo "resources: [../$ov]"
    [ $# -gt 0 ] && echo "components:" && for c in "$@"; do echo "  - ../../components/$c"; done
  } >"$TMP/kustomization.yaml"
  if ! kubectl kustomize "$TMP" >"$OUT/$name.yaml" 2>"$OUT/$name.err"; then
    echo "not ok 1 - kubectl kustomize $name"; sed 's/^/# /' "$OUT/$name.err"; exit 1
  fi
}
render cpu cpu
render gpu gpu
render cpu+kvstore cpu kvstore
render cpu+tls cpu tls
render cpu+kvstore+tls cpu kvstore tls
render cpu+tls+kvstore cpu tls kvstore
cp "$SRC/tests/integration/deploy_schema.mjs" "$NPM_DIR/"
# the negative control: a Deployment's probe and pod spec misspelt
sed -e '0,/periodSeconds:/s//periodSecond:/' \
    -e '0,/automountServiceAccountToken:/s//automountServiceAccountTokn:/' \
    "$OUT/cpu.yaml" >"$OUT/misspelt.yaml.bad"
control() {
  local got
  got=$(/usr/bin/python3 "$SRC/tests/integration/deploy_fields.py" "$OUT/misspelt.yaml.bad")
  if [ $? != 0 ] && grep -q 'periodSecond: no such field in V1Probe' <<<"$got" &&
     grep -q 'automountServiceAccountTokn: no such field in V1PodSpec' <<<"$got"; then
    echo "ok 1 - two misspelt fields are caught (the schemas alone let them pass)"
  else
    echo "not ok 1 - two misspelt fields are caught"; sed 's/^/# /' <<<"$got"
  fi
}
# three TAP streams in one: numbered again, one plan, fails on any not ok
{ timeout 120 node "$NPM_DIR/deploy_schema.mjs" "$OUT"/*.yaml
  timeout 120 /usr/bin/python3 "$SRC/tests/integration/deploy_fields.py" "$OUT"/*.yaml ||
    echo "not ok 1 - deploy_fields.py exited $?"
  control
} | awk '/^1\.\.[0-9]+/ { next }
         /^(not )?ok [0-9]+/ { k++; bad += /^not/; sub(/ok [0-9]+/, "ok " k) }
         { print }
         END { print "1.." k; exit bad > 0 }'
