#!/bin/sh
# Smoke run of one libFuzzer target: run_fuzz.sh TARGET CORPUS_DIR
# Every seed, then mutations for BT_FUZZ_SMOKE_S seconds (default 3; the
# long runs are `make fuzz`), in a copy of the seeds so new inputs do not
# land in the source tree; any crash, leak or hang fails the test.
set -u
exe="$1"
seeds="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
cp "$seeds"/* "$work"/ 2>/dev/null
"$exe" -max_total_time="${BT_FUZZ_SMOKE_S:-3}" -rss_limit_mb=2048 -timeout=30 \
  -artifact_prefix="$work/" "$work"
