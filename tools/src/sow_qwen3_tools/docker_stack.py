"""Building the image and running docker-compose.yml with the real Docker engine, for the ``docker`` tests.

The engine is whatever the environment points the docker CLI at (DOCKER_HOST;
.ci/run starts one with shared/tools/docker-up.sh). Without one the tests
skip, saying so. Names are unique to this checkout (image tag) and to each
run (compose project), so other runs on the same engine are left alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from . import REPO

COMPOSE = REPO / "docker-compose.yml"

WHEELHOUSE = REPO / "wheelhouse"
# The official base image the Dockerfile names; where it cannot be pulled the
# stand-in that shared/tools/docker-up.sh provides is used, as a user behind a
# firewall would pass their registry's copy.
STAND_IN_PYTHON_IMAGE = "python:3.11-slim"
IMAGE_TAG = "sow-qwen3-aligner:test-" + hashlib.sha256(str(REPO).encode()).hexdigest()[:10]


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run the docker CLI; raise with its output when ``check`` and it fails."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}):\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def engine_problem() -> str | None:
    """Why no Docker engine with Compose v2 can be used here, or None when one can."""
    if not shutil.which("docker"):
        return "no docker CLI on PATH"
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"no Docker engine reachable (docker info: {info.stderr.strip()[:300]})"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    if compose.returncode != 0:
        return "the docker compose v2 plugin is missing"
    return None


def torch_wheel_source() -> list[str]:
    """Build arguments for torch: the local CPU wheel (copied into wheelhouse/) when pip knows one, else the index.

    The PyTorch index is unreachable on the CI machines; their pip
    configuration names a local wheel folder (find-links) that holds the CPU build.
    """
    pin = re.search(r"^torch==(\S+)", (REPO / "requirements" / "server.txt").read_text(), re.M)[1]
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    pattern = f"torch-{pin}+cpu-{tag}-{tag}-*.whl"
    if not list(WHEELHOUSE.glob(pattern)):
        config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
        folders = [Path(folder) for line in config.splitlines() if "find-links" in line
                   for folder in line.split("=", 1)[1].strip("'\" ").split()]
        found = [wheel for folder in folders if folder.is_dir() for wheel in folder.glob(pattern)]
        if not found:
            return []
        shutil.copy2(found[0], WHEELHOUSE / found[0].name)
    return ["--build-arg", "TORCH_WHEELHOUSE=wheelhouse"]


def python_image() -> str:
    """The build's base image: SOW_QWEN3_PYTHON_IMAGE, else the stand-in when the engine has it, else the Dockerfile's."""
    chosen = os.environ.get("SOW_QWEN3_PYTHON_IMAGE")
    if chosen:
        return chosen
    if docker("image", "inspect", STAND_IN_PYTHON_IMAGE, check=False).returncode == 0:
        return STAND_IN_PYTHON_IMAGE
    return re.search(r"^ARG PYTHON_IMAGE=(\S+)", (REPO / "Dockerfile").read_text(), re.M)[1]


def build_image() -> tuple[str, float]:
    """``docker build`` of the Dockerfile as shipped; returns the image tag and its size in GB."""
    docker("build", "--build-arg", f"PYTHON_IMAGE={python_image()}", *torch_wheel_source(),
           "--tag", IMAGE_TAG, str(REPO), timeout=1800)
    size = int(docker("image", "inspect", IMAGE_TAG, "--format", "{{.Size}}").stdout)
    return IMAGE_TAG, size / 1e9


@dataclass
class Compose:
    """One ``docker compose`` project of docker-compose.yml with its own name and variables."""

    variables: dict[str, str]
    ports: dict[str, int] = field(default_factory=dict)  # published host ports by name, for the tests' requests
    project: str = field(default_factory=lambda: f"sow-qwen3-test-{uuid.uuid4().hex[:8]}")

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """``docker compose ARGS`` with only our variables (no .env file, no SOW_QWEN3_* of the caller's)."""
        empty_env_file = Path(os.devnull)
        env = {name: value for name, value in os.environ.items() if not name.startswith(("SOW_QWEN3_", "COMPOSE_"))}
        result = subprocess.run(
            ["docker", "compose", "--project-name", self.project, "--env-file", str(empty_env_file),
             "-f", str(COMPOSE), *args],
            capture_output=True, text=True, timeout=timeout, cwd=REPO, env={**env, **self.variables},
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker compose {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def container(self, service: str) -> str:
        """The container id of ``service``."""
        ids = self.run("ps", "--all", "--quiet", service).stdout.split()
        assert len(ids) == 1, f"{service}: {ids}"
        return ids[0]

    def inspect(self, service: str) -> dict:
        return json.loads(docker("inspect", self.container(service)).stdout)[0]

    def logs(self, service: str) -> str:
        return self.run("logs", "--no-color", service).stdout

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "60", timeout=180, check=False)
