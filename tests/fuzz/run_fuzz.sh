#!/bin/sh
# Smoke run of one libFuzzer target: run_fuzz.sh TARGET CORPUS_DIR
# A bounded number of runs from the seed corpus (copied, so new inputs do
# not land in the source tree); any crash fails the test.
set -u
exe="$1"
seeds="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
cp "$seeds"/* "$work"/ 2>/dev/null
"$exe" -runs=20000 -max_total_time=30 -rss_limit_mb=2048 \
  -artifact_prefix="$work/" "$work"
