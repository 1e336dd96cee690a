#!/usr/bin/env bash
# Installs the Debian packages Baton needs to build and test, only those
# missing. The one list of build and test dependencies lives here.
set -euo pipefail

PACKAGES=(
  # build
  meson ninja-build pkg-config gcc clang libclang-rt-14-dev
  # libraries
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler
  libucx-dev ucx-utils libevent-dev libopenblas-dev libpcre2-dev
  libssl-dev libjansson-dev libutf8proc-dev
  # tests
  libcmocka-dev python3 python3-grpcio python3-protobuf protobuf-compiler
  protobuf-compiler-grpc python3-numpy curl procps openssl nodejs python3-yaml
  # benchmark plots (bench/workload/plot.sh)
  gnuplot-nox
  # tests of deploy/k8s: the API's field names (unknown fields)
  python3-kubernetes
  # tests of /metrics: promtool check metrics, a real Prometheus (metrics/cluster)
  prometheus
  # tests of deploy/: the units' system call filter (strace, systemd-analyze)
  strace systemd
  # the fault matrix's network kinds: a namespace per node, nftables and
  # an NFQUEUE rule (tests/fault/netns.py)
  iproute2 nftables iptables
)
# The openai npm client test needs npm. Node.js from other sources bundles
# its own npm, and Debian's npm package would conflict with it: ask for npm
# only when no npm command exists.
if ! command -v npm >/dev/null 2>&1; then
  PACKAGES+=(npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  SUDO=sudo
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
