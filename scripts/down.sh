#!/usr/bin/env bash
# `make down`: stop everything `make up` started.
set -euo pipefail
if [ -x deploy/local/baton-local ]; then
  exec deploy/local/baton-local down
fi
echo "down: nothing running"
