#!/bin/bash
# The device check (issue 20, docs/internals/cuda.md): run on a fresh GPU
# machine from binaries built here, in one call, in under 8 minutes. Here:
#   tests/cuda/device-check.sh --pack [BUILD]   gathers the shared libraries
#       the binaries need that a bare CUDA image lacks into BUILD/cuda-libs
# There (the run tool, carrying build/tests/cuda, build/bench/cuda,
# build/tools, build/common/engine/cuda and build/cuda-libs):
#   tests/cuda/device-check.sh [BUILD]
# It prints the GPU's ceilings (HBM read, copies, pinned staging, bf16
# GEMM), then every check, then one summary table; exit 0 only when every
# check passed. Each step has its own time limit.
set -u
pack=0
[ "${1:-}" = --pack ] && { pack=1; shift; }
B=${1:-build}
[ -d "$B" ] || { echo "device-check: no build folder $B" >&2; exit 2; }

bins=("$B/bench/cuda/baton-cudaceilings" "$B/tests/cuda/cuda_smoke"
      "$B/tests/cuda/cuda_exact_check" "$B/tools/baton-run"
      "$B/tools/baton-mkmodel" "$B/common/engine/cuda/libbaton-cuda.so"
      "$B/tests/cuda/nccl_check" "$B/tests/cuda/fast_check"
      "$B/bench/cuda/baton-cudaenginebench")

if [ $pack = 1 ]; then
  # everything ldd resolves outside libc, the CUDA toolkit and the driver
  mkdir -p "$B/cuda-libs"
  for b in "${bins[@]}"; do
    [ -e "$b" ] || { echo "device-check: $b is not built (meson -Dcuda=enabled)" >&2; exit 2; }
    ldd "$b" | awk '$3 ~ /^\// {print $3}' |
      grep -Ev '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux[^/]*)\.so|/cuda[^/]*/|libcuda\.so|libnccl' |
      while read -r lib; do cp -L "$lib" "$B/cuda-libs/"; done
  done
  du -sh "$B/cuda-libs" "${bins[@]}"
  exit 0
fi

# NCCL and cuBLAS where the image keeps them (pip wheels or the toolkit)
extra=$(find /usr /opt -xdev \( -name 'libnccl.so.2' -o -name 'libcublasLt.so.13' \
          -o -name 'libcudart.so.13' \) -printf '%h\n' 2>/dev/null | sort -u | tr '\n' ':')
export LD_LIBRARY_PATH="$B/cuda-libs:${extra}${LD_LIBRARY_PATH:-}"
OUTDIR=${OUT:-$(mktemp -d)}
declare -a names results
status=0

step() { # NAME LIMIT_S CMD...: runs it, keeps its output, notes pass/fail
  local name=$1 limit=$2; shift 2
  local log="$OUTDIR/$name.log" rc t0 t1
  t0=$(date +%s.%N)
  timeout "$limit" "$@" >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  echo "== $name (exit $rc, $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s)"
  cat "$log"
  names+=("$name")
  if grep -q '^1\.\.0 # SKIP' "$log"; then results+=(SKIPPED); status=1
  elif [ $rc = 0 ] && ! grep -q '^not ok' "$log"; then results+=(pass)
  else results+=("FAIL($rc)"); status=1; fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem \
  --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
step ceilings 120 "$B/bench/cuda/baton-cudaceilings"
step smoke 60 "$B/tests/cuda/cuda_smoke"
step exact-kernels 180 "$B/tests/cuda/cuda_exact_check"
step exact-forward 240 "$(dirname "$0")/exact_forward.sh" "$B"
step nccl 90 "$B/tests/cuda/nccl_check"
model=$(mktemp -d)/llama
"$B/tools/baton-mkmodel" builtin --layers 3 --out "$model" >/dev/null 2>&1
step fast-invariance 240 "$B/tests/cuda/fast_check" "$model"
step bench-fast 150 "$B/bench/cuda/baton-cudaenginebench" fast 512 64 128
step bench-exact 150 "$B/bench/cuda/baton-cudaenginebench" exact 128 8 64

echo
echo "== summary"
grep -h -E '^(hbm_read|d2d_copy|h2d_pinned|d2h_pinned|gemm_bf16) ' \
  "$OUTDIR/ceilings.log" 2>/dev/null | sed 's/^/ceiling /'
# the 8B-shaped figures as fractions of this run's ceilings: decode moves
# every weight once per step (HBM), prefill does 2 FLOPs per weight per
# token (bf16 GEMM)
hbm=$(awk '$1 == "hbm_read" {print $2}' "$OUTDIR/ceilings.log" 2>/dev/null)
gemm=$(awk '$1 == "gemm_bf16" {print $2}' "$OUTDIR/ceilings.log" 2>/dev/null)
for m in fast exact; do
  [ -f "$OUTDIR/bench-$m.log" ] || continue
  awk -v m="$m" -v hbm="${hbm:-0}" -v gemm="${gemm:-0}" '
    { v[$1] = $2 }
    END {
      if (!("weight_bytes" in v)) { print "bench " m ": no figures"; exit }
      d1 = v["weight_bytes"] * v["decode1_tok_s"] / 1e9
      pf = v["flops_per_token"] * v["prefill_tok_s"] / 1e12
      printf "bench %-5s prefill %.0f tok/s = %.1f TFLOP/s = %.3f of gemm_bf16; ", m, v["prefill_tok_s"], pf, (gemm > 0 ? pf / gemm : 0)
      printf "decode b1 %.2f tok/s = %.0f GB/s = %.3f of hbm_read; ", v["decode1_tok_s"], d1, (hbm > 0 ? d1 / hbm : 0)
      printf "decode b%d %.1f tok/s\n", v["decodeB_batch"], v["decodeB_tok_s"]
    }' "$OUTDIR/bench-$m.log"
done
for i in "${!names[@]}"; do
  n_ok=$(grep -c '^ok' "$OUTDIR/${names[$i]}.log" 2>/dev/null)
  n_bad=$(grep -c '^not ok' "$OUTDIR/${names[$i]}.log" 2>/dev/null)
  printf '%-16s %-10s %s ok, %s not ok\n' "${names[$i]}" "${results[$i]}" "$n_ok" "$n_bad"
done
echo "device-check: $([ $status = 0 ] && echo PASS || echo FAIL)"
exit $status
