#!/usr/bin/env bash
# Install everything the suite needs, lint the code (ruff.toml), then run the full test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -m load).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check --quiet .
exec .venv/bin/python -m pytest "$@"
