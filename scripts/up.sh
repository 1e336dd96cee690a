#!/usr/bin/env bash
# `make up`: start Baton on the built-in model and answer a demo request.
# Until the cluster lands this runs the single-process demo when the engine
# is built; see docs/development.md.
set -euo pipefail
BUILD=${BUILD:-build}
if [ -x deploy/local/baton-local ]; then
  exec deploy/local/baton-local up --demo
fi
if [ -x "$BUILD/tools/baton-run" ] && [ -x "$BUILD/tools/baton-mkmodel" ]; then
  model=run/models/builtin
  mkdir -p run/models
  [ -f "$model/config.json" ] || "$BUILD/tools/baton-mkmodel" builtin --out "$model"
  exec "$BUILD/tools/baton-run" --model "$model" --prompt "Hello, Baton" --max-tokens 16
fi
echo "up: nothing to start yet: the engine (baton-run) is not built in this tree" >&2
exit 1
