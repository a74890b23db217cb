"""The client as ``pip install ./contract ./client`` gives it: the built wheels hold the review page and py.typed."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def built_wheel(package: str, tmp_path: Path) -> zipfile.ZipFile:
    """The wheel pip builds from a copy of ``package`` (a folder of the repository), with this venv's setuptools."""
    source = tmp_path / package
    shutil.copytree(REPO / package, source, ignore=shutil.ignore_patterns("*.egg-info", "build", "__pycache__"))
    out = tmp_path / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                           "--wheel-dir", str(out), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.mark.parametrize("package, wanted", [
    ("client", ["sow_qwen3/py.typed", "sow_qwen3/review/static/index.html", "sow_qwen3/review/static/review.css",
                "sow_qwen3/review/static/review.js", "sow_qwen3/review/server.py"]),
    ("contract", ["sow_qwen3_contract/py.typed", "sow_qwen3_contract/quality.py", "sow_qwen3_contract/response.py"]),
])
def test_the_wheel_ships_what_the_commands_read(package, wanted, tmp_path):
    names = set(built_wheel(package, tmp_path).namelist())
    assert [name for name in wanted if name not in names] == []
