# Shared by bench/sim/*.sh (sourced after bench/cluster/bench_lib.sh):
# start a local cluster and read the shape of its nodes.

sim_up() { # mode, model dir, then baton-local up flags; sets URL_<mode>, GRPC_<mode>, MODEL_NAME
  local mode=$1 model=$2
  shift 2
  BUILD=$BUILD BATON_RUN_DIR=$TMP/run-$mode "$LOCAL" up "$@" --model "$model" \
    --http-port 0 --grpc-port 0 >"$TMP/$mode-up.log" 2>&1 ||
    { cat "$TMP/$mode-up.log" >&2; return 1; }
  printf -v "URL_$mode" '%s' "$(field "$TMP/run-$mode/endpoints.json" 'j["http"]')"
  printf -v "GRPC_$mode" 'ipv4:%s' "$(field "$TMP/run-$mode/endpoints.json" 'j["grpc"]')"
  MODEL_NAME=$(field "$TMP/run-$mode/endpoints.json" 'j["model"]')
}

sim_shape() { # mode, model dir: baton-sim fit's shape flags
  local grpc="GRPC_$1"
  "$BUILD/cli/batonctl" --router "${!grpc}" nodes -o json >"$TMP/nodes.json"
  /usr/bin/python3 - "$TMP/nodes.json" "$2/config.json" <<'PY'
import json, sys
nodes = json.load(open(sys.argv[1]))
if isinstance(nodes, dict):
    nodes = next(v for v in nodes.values() if isinstance(v, list))
n = next(x for x in nodes if x.get("total_blocks"))
cfg = json.load(open(sys.argv[2]))
def get(*names):
    for k in names:
        if k in cfg:
            return cfg[k]
    raise SystemExit("sim_shape: no %s in the model config" % names[0])
layers = get("n_layers", "num_hidden_layers")
heads = get("n_heads", "num_attention_heads")
kv = cfg.get("n_kv_heads", cfg.get("num_key_value_heads", heads))
dim = cfg.get("head_dim", get("dim", "hidden_size") // heads)
# f32 kv (the nodes' default --kv-dtype): K and V, every layer
print("--total-blocks %d --block-size %d --kv-bytes-per-token %d"
      % (n["total_blocks"], n.get("block_size", 16), 2 * layers * kv * dim * 4))
PY
}
