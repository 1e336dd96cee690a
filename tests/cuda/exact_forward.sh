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
      if [ -s "$tmp/cpu.bin" ] && [ -s "$tmp/cuda.bin" ]; then
        # which logit row (position) and column first differ, and by how much
        python3 - "$tmp/cpu.bin" "$tmp/cuda.bin" "$m/config.json" <<'PY' 2>/dev/null || true
import json, struct, sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
V = json.load(open(sys.argv[3]))["vocab_size"]
n = min(len(a), len(b)) // 4
x, y = struct.unpack("<%df" % n, a[:n * 4]), struct.unpack("<%df" % n, b[:n * 4])
bad = [i for i in range(n) if a[4 * i:4 * i + 4] != b[4 * i:4 * i + 4]]
if bad:
    i = bad[0]
    print("# %d of %d logits differ; first: row %d (position) col %d: cpu %r gpu %r; "
          "max |diff| %g" % (len(bad), n, i // V, i % V, x[i], y[i],
                             max(abs(x[j] - y[j]) for j in bad)))
if len(a) != len(b):
    print("# sizes differ: cpu %d gpu %d bytes" % (len(a), len(b)))
PY
      fi
    fi
  done
done
echo "1..$n"
[ $bad = 0 ]
