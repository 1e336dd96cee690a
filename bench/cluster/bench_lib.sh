# Shared by the cluster benchmark scripts (sourced, not run): a temporary
# folder whose local clusters are stopped and removed on any exit, and a
# JSON field reader. Needs BUILD, LOCAL (deploy/local/baton-local) and
# NAME (the script's name, for the folder) set by the caller. KEEP=1 keeps
# the folder (the clusters' logs, the raw results) and says where.

TMP=$(mktemp -d "/tmp/baton-$NAME.XXXXXX")
cleanup() {
  local rd
  for rd in "$TMP"/run-*; do
    [ -d "$rd" ] && BUILD=$BUILD BATON_RUN_DIR=$rd "$LOCAL" down >/dev/null 2>&1 || true
  done
  if [ -n "${KEEP:-}" ]; then
    echo "kept $TMP" >&2
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

field() { # file, python expression over the parsed object `j`
  /usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}
