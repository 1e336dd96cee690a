#!/bin/sh
# Runs protoc-c, then renames the service vtable member protoc-c names after
# the RPC `Register` (registry.proto): it emits `register`, a C keyword.
# Usage: protoc-c.sh PROTOC_C PROTO_PATH OUTDIR INPUT_PROTO OUTPUT_HEADER
set -eu
"$1" --proto_path="$2" --c_out="$3" "$4"
sed -i -e 's/(\*register)(/(*register_)(/' \
       -e 's/function_prefix__ ## register\b/function_prefix__ ## register_/' "$5"
