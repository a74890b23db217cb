#!/usr/bin/env python3
"""The prepared GPU check (--help lists the options); the code lives in ``sow_qwen3_tools.gpu_check`` (tools/).

Where the project's environment is missing (a GPU machine: no network, its own
CUDA torch and Transformers 5), this command first installs into a scratch
folder the wheels ``scripts/gpu_wheels.sh`` put in ``.whl/`` (no dependencies
fetched, nothing replaced in the machine's environment), then runs again with
that folder and the project's own packages of this checkout (their ``src``
folders, as the editable install of requirements/dev.txt has them) first on
PYTHONPATH. numpy goes into a folder of its own that only the Triton server
gets first on its path (``--server-path``): the 2.51 Python backend needs
numpy<2, while the in-process steps keep the machine's numpy.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
SITE = Path(os.environ.get("SOW_QWEN3_GPU_SITE", "/tmp/sow-qwen3-gpu-site"))
SERVER_SITE = SITE.with_name(f"{SITE.name}-server")  # numpy<2, for the Triton server alone
PACKAGES = ("contract", "core", "server", "tools")
READY = "SOW_QWEN3_GPU_SITE_READY"  # set for the second run, so that it never installs again


def ready() -> bool:
    return all(importlib.util.find_spec(name) for name in ("sow_qwen3_tools", "qwen_asr"))


def install_and_run_again() -> int:
    wheels = sorted(WHEELS.glob("*.whl"))
    if not wheels or os.environ.get(READY):
        print(f"gpu_check.py: qwen-asr or the project's packages are missing and {WHEELS} holds no wheels: "
              "run scripts/gpu_wheels.sh where PyPI is reachable, or install requirements/dev.txt", file=sys.stderr)
        return 2
    server_only = [wheel for wheel in wheels if wheel.name.startswith("numpy-")]
    for target, group in ((SITE, [wheel for wheel in wheels if wheel not in server_only]), (SERVER_SITE, server_only)):
        if group:
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                            "--no-compile", "--upgrade", "--target", str(target), *map(str, group)], check=True)
    sources = [str(REPO / package / "src") for package in PACKAGES]
    path = os.pathsep.join(filter(None, (str(SITE), *sources, os.environ.get("PYTHONPATH"))))
    again = [sys.executable, *sys.argv, *(["--server-path", str(SERVER_SITE)] if server_only else [])]
    return subprocess.run(again, env={**os.environ, "PYTHONPATH": path, READY: "1"}).returncode


if __name__ == "__main__":
    if not ready():
        raise SystemExit(install_and_run_again())
    from sow_qwen3_tools.gpu_check import main

    raise SystemExit(main())
