#!/bin/sh
# baton-run tokenize / detokenize against the shared real tokenizers.
# usage: cli_test.sh BATON_RUN
set -u
run="$1"
data="${BATON_SHARED_DATA:-}/tokenizers"
if [ ! -f "$data/gpt2/tokenizer.json" ]; then
  if [ "${CI:-}" = true ]; then echo "shared data missing under CI"; exit 1; fi
  echo "skip: BATON_SHARED_DATA/tokenizers not found"; exit 77
fi
fail=0
check() { # name want got
  if [ "$2" = "$3" ]; then echo "ok: $1"; else echo "FAIL: $1: want '$2' got '$3'"; fail=1; fi
}
check "gpt2 tokenize" "[15496, 995]" "$(printf 'Hello world' | "$run" tokenize --tokenizer "$data/gpt2")"
check "llama3 no bos" "[9906, 1917]" "$(printf 'Hello world' | "$run" tokenize --tokenizer "$data/llama3")"
check "llama3 --bos" "[128000, 9906, 1917]" "$(printf 'Hello world' | "$run" tokenize --tokenizer "$data/llama3" --bos)"
check "llama3 --special" "[128009]" "$(printf '<|eot_id|>' | "$run" tokenize --tokenizer "$data/llama3" --special)"
check "env var" "[15496, 995]" "$(printf 'Hello world' | BATON_TOKENIZER="$data/gpt2" "$run" tokenize)"
check "detokenize" "Hello world" "$(printf '[9906, 1917]' | "$run" detokenize --tokenizer "$data/llama3")"
check "skip special" "Hi" "$(printf '[128000, 13347]' | "$run" detokenize --tokenizer "$data/llama3" --skip-special)"
text='Füße 🦙 «x»
	end'
ids=$(printf '%s' "$text" | "$run" tokenize --tokenizer "$data/qwen2")
check "round trip" "$text" "$(printf '%s' "$ids" | "$run" detokenize --tokenizer "$data/qwen2")"
printf 'x' | "$run" tokenize --tokenizer "$data/gpt2" --bos=maybe >/dev/null 2>&1
check "bad flag value exits 2" 2 $?
printf 'x' | "$run" tokenize >/dev/null 2>&1
check "missing --tokenizer exits 2" 2 $?
printf 'x' | "$run" tokenize --tokenizer /nonexistent >/dev/null 2>&1
check "missing folder exits 1" 1 $?
printf 'a\377b' | "$run" tokenize --tokenizer "$data/gpt2" >/dev/null 2>&1
check "invalid utf-8 exits 1" 1 $?
printf '[1, "x"]' | "$run" detokenize --tokenizer "$data/gpt2" >/dev/null 2>&1
check "bad id list exits 1" 1 $?
"$run" frobnicate >/dev/null 2>&1
check "unknown command exits 2" 2 $?
exit $fail
