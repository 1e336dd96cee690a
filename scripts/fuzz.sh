#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer targets (tests/fuzz/, clang with
# ASan+UBSan) and runs each for FUZZ_TIME seconds, one after the other,
# then prints per target: executions, executions per second, crashes.
#   scripts/fuzz.sh BUILD SECONDS [TARGET...]   (TARGET: http_head, ...)
# Each target's corpus grows in BUILD/fuzz/corpus/<target> (seeded from
# tests/fuzz/corpus/<target>, which stays as committed) so later runs go
# on from there; what crashes lands in BUILD/fuzz/artifacts/<target>/,
# and reproduces with: BUILD/tests/fuzz/fuzz_<target> <that file>.
# FUZZ_NICE (default 0) runs them under nice; FUZZ_ARGS adds libFuzzer flags.
set -uo pipefail
BUILD=${1:-build}
SECONDS_EACH=${2:-300}
shift 2 2>/dev/null || shift $#
SRC=$(cd "$(dirname "$0")/.." && pwd)

# (grep -c reads it all: with pipefail, grep -q's early exit fails ninja)
if [ "$(ninja -C "$BUILD" -t targets all 2>/dev/null | grep -c '^tests/fuzz/fuzz_')" = 0 ]; then
  echo "fuzz: no fuzz targets in $BUILD (they need clang with libFuzzer:" \
       "Debian's clang and libclang-rt-dev; then reconfigure with -Dfuzz=enabled)" >&2
  exit 1
fi
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for c in "$SRC"/tests/fuzz/fuzz_*.c; do
    t=$(basename "$c" .c)
    t=${t#fuzz_}
    [ "$t" = probe ] || targets+=("$t")
  done
fi
ninja -C "$BUILD" $(printf 'tests/fuzz/fuzz_%s ' "${targets[@]}") || exit 1

rc=0
report=()
for t in "${targets[@]}"; do
  exe="$BUILD/tests/fuzz/fuzz_$t"
  corpus="$BUILD/fuzz/corpus/$t"
  art="$BUILD/fuzz/artifacts/$t"
  mkdir -p "$corpus" "$art"
  before=$(ls "$art" | wc -l)
  log="$BUILD/fuzz/$t.log"
  echo "== fuzz_$t: ${SECONDS_EACH} s (log: $log)"
  # new inputs go to the first folder only: the committed seeds stay as they are
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    nice -n "${FUZZ_NICE:-0}" "$exe" -max_total_time="$SECONDS_EACH" \
    -print_final_stats=1 -rss_limit_mb=4096 -timeout=60 -artifact_prefix="$art/" \
    ${FUZZ_ARGS:-} "$corpus" "$SRC/tests/fuzz/corpus/$t" >"$log" 2>&1
  status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crashes=$(( $(ls "$art" | wc -l) - before ))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
    crashes=1   # died without an artifact (see the log)
  fi
  [ "$crashes" -eq 0 ] || rc=1
  report+=("$(printf '%-16s %12s %9s %8s' "$t" "${execs:-?}" "${rate:-?}" "$crashes")")
done
printf '\n%-16s %12s %9s %8s\n' target executions exec/s crashes
printf '%s\n' "${report[@]}"
[ $rc -eq 0 ] || echo "fuzz: crashes above; inputs in $BUILD/fuzz/artifacts/" >&2
exit $rc
