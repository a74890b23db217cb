"""scripts/gpu_wheels.sh: every wheel it fetches for the GPU machine is pinned, at the version the core asks for."""
from __future__ import annotations

import re
import subprocess
import tomllib

from support.audio import REPO

SCRIPT = REPO / "scripts" / "gpu_wheels.sh"


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    lines = (REPO / "requirements" / "constraints.txt").read_text().splitlines()
    return {normal(name): version for name, _, version in (line.partition("==") for line in lines)
            if version and not name.startswith("#")}


def test_the_script_parses_and_fetches_only_pinned_packages():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    listed = re.search(r"^names=\(([^)]*)\)", SCRIPT.read_text(), re.M | re.S).group(1).split()
    pinned = pins()
    assert [name for name in listed if normal(name) not in pinned] == []
    # The packages the GPU machines carry in other versions are the ones the core pins.
    core = tomllib.loads((REPO / "core" / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {normal(spec.split("==")[0]): spec.split("==")[1] for spec in core if "==" in spec}
    for name in ("qwen-asr", "transformers", "accelerate"):
        assert name in map(normal, listed) and pinned[name] == wanted[name], name
