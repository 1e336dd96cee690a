#!/usr/bin/env bash
# `make down`: stop everything `make up` started.
set -euo pipefail
exec deploy/local/baton-local down
