#!/bin/bash
# `exact` numerics end to end (issue 20): for each of the six architectures
# baton-mkmodel writes (llama, mistral, qwen2, mixtral, qwen2_moe,
# qwen3_moe), baton-run's logits of every prompt position and every
# decode step on --backend cuda must equal --backend cpu's byte for byte,
# with the KV cache in f32 and bf16 and the prompt in chunks of 5 (so
# chunking and the paged cache are crossed). TAP; run by device-check.sh.
# usage: tests/cuda/exact_forward.sh BUILD
set -u
B=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0 bad=0
ids=1,7,42,99,5,300,12,8,1000,3,77,64,2,9,500,31,17,250,4,600,11,88,1200
for arch in llama mistral qwen2 mixtral qwen2_moe qwen3_moe; do
  m="$tmp/$arch"
  case $arch in
    mixtral|qwen3_moe) preset=(builtin-moe) ;;
    qwen2_moe) preset=(builtin-moe --shared-ffn 256) ;;   # with its shared expert
    *) preset=(builtin) ;;
  esac
  if ! "$B/tools/baton-mkmodel" "${preset[@]}" --arch "$arch" --layers 3 --out "$m" \
       >"$tmp/mk.log" 2>&1; then
    n=$((n + 1)); bad=$((bad + 1))
    echo "not ok $n - $arch: baton-mkmodel failed: $(tail -1 "$tmp/mk.log")"
    continue
  fi
  for kv in f32 bf16; do
    for be in cpu cuda; do
      "$B/tools/baton-run" --model "$m" --prompt-ids "$ids" --max-tokens 12 \
        --ignore-eos --kv-dtype "$kv" --chunk 5 --threads 2 --backend "$be" \
        --logits-out "$tmp/$be.bin" >"$tmp/$be.out" 2>&1
      echo $? >"$tmp/$be.rc"
    done
    n=$((n + 1))
    if [ "$(cat "$tmp/cpu.rc")" = 0 ] && [ "$(cat "$tmp/cuda.rc")" = 0 ] &&
       cmp -s "$tmp/cpu.bin" "$tmp/cuda.bin" && [ -s "$tmp/cpu.bin" ]; then
      echo "ok $n - $arch, kv $kv: cuda exact logits equal the CPU's ($(stat -c %s "$tmp/cpu.bin") bytes)"
    else
      bad=$((bad + 1))
      echo "not ok $n - $arch, kv $kv: cuda exact logits differ from the CPU's"
      echo "# cpu: $(tail -2 "$tmp/cpu.out" | tr '\n' ' ')"
      echo "# cuda: $(tail -2 "$tmp/cuda.out" | tr '\n' ' ')"
      [ -s "$tmp/cpu.bin" ] && [ -s "$tmp/cuda.bin" ] &&
        echo "# first differing byte: $(cmp "$tmp/cpu.bin" "$tmp/cuda.bin" | head -1)"
    fi
  done
done
echo "1..$n"
[ $bad = 0 ]
