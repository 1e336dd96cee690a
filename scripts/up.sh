#!/usr/bin/env bash
# `make up`: start Baton on the built-in model and answer a demo request.
# With the node daemons built: a local cluster (kvstore, router, 1 prefill,
# 1 decode)
# and one request through the OpenAI API and one through gRPC. Without
# them: the single-process engine (baton-run).
set -euo pipefail
BUILD=${BUILD:-build}
export BUILD=$(cd "$BUILD" && pwd)
if [ -x "$BUILD/prefill_node/baton-prefill" ] && [ -x "$BUILD/decode_node/baton-decode" ]; then
  exec deploy/local/baton-local up --demo "$@"
fi
model=run/models/builtin
mkdir -p run/models
[ -f "$model/config.json" ] || "$BUILD/tools/baton-mkmodel" builtin --out "$model"
echo "up: the node daemons are not built here: running the single-process engine"
exec "$BUILD/tools/baton-run" --model "$model" --prompt "Hello, Baton" --max-tokens 16
