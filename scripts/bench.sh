#!/usr/bin/env bash
# `make bench`: run every benchmark program under bench/ that was built.
set -uo pipefail
BUILD=${1:-build}
found=0
for b in "$BUILD"/bench/*/baton-* "$BUILD"/bench/baton-*; do
  [ -x "$b" ] || continue
  found=1
  echo "== $(basename "$b")"
  "$b" || echo "bench: $(basename "$b") failed with status $?"
done
[ $found = 1 ] || echo "bench: no benchmark built yet"
