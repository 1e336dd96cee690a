#!/usr/bin/env bash
# `make bench`: run every benchmark program under bench/ that was built.
# LLAMA_BENCH=PATH (llama.cpp's llama-bench) also times llama.cpp on the
# engine benchmark's weights (docs/internals/engine.md).
set -uo pipefail
BUILD=${1:-build}
found=0
for b in "$BUILD"/bench/*/baton-* "$BUILD"/bench/baton-*; do
  [ -x "$b" ] || continue
  found=1
  echo "== $(basename "$b")"
  args=()
  if [ "$(basename "$b")" = baton-enginebench ] && [ -n "${LLAMA_BENCH:-}" ]; then
    args=(--llama-bench "$LLAMA_BENCH")
  fi
  "$b" "${args[@]}" || echo "bench: $(basename "$b") failed with status $?"
done
[ $found = 1 ] || echo "bench: no benchmark built yet"
# the simulator: validated against a real local cluster, then at scale
# (docs/internals/sim.md)
if [ -x "$BUILD/bench/sim/baton-sim" ]; then
  for s in validate scale; do
    echo "== bench/sim/$s.sh"
    bench/sim/$s.sh "$BUILD" || echo "bench: bench/sim/$s.sh failed with status $?"
  done
fi
