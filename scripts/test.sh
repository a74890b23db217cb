#!/usr/bin/env bash
# Install everything the suite needs, then run the full test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m load).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
