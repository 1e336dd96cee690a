#!/usr/bin/env bash
# The whole node cluster test (node_cluster.py: HTTP and gRPC completions,
# determinism against baton-run, disconnects, direct Decode calls, drain)
# with the control plane authenticated: every daemon and the test's own
# node clients read one shared cluster token from BATON_CLUSTER_TOKEN_FILE.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
command -v openssl >/dev/null 2>&1 || { echo "1..0 # SKIP the openssl command is missing"; exit 0; }
dir=$(mktemp -d /tmp/baton-auth-node.XXXXXX)
trap 'rm -rf "$dir"' EXIT
(umask 077 && openssl rand -hex 32 >"$dir/cluster.token")
export BATON_CLUSTER_TOKEN_FILE=$dir/cluster.token
/usr/bin/python3 "$HERE/node_cluster.py" "${1:-shm}"
