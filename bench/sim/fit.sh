#!/usr/bin/env bash
# Fits baton-sim's cost functions to this machine: starts a colocated
# cluster (with a kvstore) and a 1 prefill + 1 decode cluster (UCX shm)
# with deploy/local/baton-local, reads the nodes' shape (pool blocks,
# block size; KV bytes per token from the model's config), and runs
# `baton-sim fit` against them (calibration loads sent by baton-bench).
#   bench/sim/fit.sh BUILD_DIR OUT.json [MODEL_DIR]
# MODEL_DIR defaults to the builtin model written by baton-mkmodel.
# FIT_REPEATS (default 3) runs per calibration point.
set -euo pipefail

[ $# -ge 2 ] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
BUILD=$(cd "$1" && pwd)
OUT=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOCAL=$ROOT/deploy/local/baton-local
NAME=sim-fit
. "$ROOT/bench/cluster/bench_lib.sh"
. "$ROOT/bench/sim/sim_lib.sh"

MODEL=${3:-}
if [ -z "$MODEL" ]; then
  MODEL=$TMP/models/builtin
  "$BUILD/tools/baton-mkmodel" builtin --max-pos 4096 --out "$MODEL" >/dev/null
fi
sim_up colo "$MODEL" --colocated
sim_up disagg "$MODEL" --prefill 1 --decode 1 --ucx-tls shm
shape=$(sim_shape colo "$MODEL")
echo "== fit: colocated $URL_colo, disaggregated $URL_disagg; $shape" >&2
# shellcheck disable=SC2086
"$BUILD/bench/sim/baton-sim" fit --url-colocated "$URL_colo" \
  --url-disagg "$URL_disagg" --model "$MODEL_NAME" \
  --bench "$BUILD/bench/cluster/baton-bench" --ctl "$BUILD/cli/batonctl" \
  --grpc "$GRPC_colo" --transport shm --fit-repeats "${FIT_REPEATS:-3}" \
  $shape --out "$OUT"
