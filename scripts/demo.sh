#!/usr/bin/env bash
# Install (first run only), then run the whole job end to end: start the
# server, align the bundled sample with the sow-qwen3 CLI, print the LRC, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
