#!/usr/bin/env bash
# Set up (if needed) and run the app on the shipped model. Extra arguments go to serve.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python serve.py "$@"
