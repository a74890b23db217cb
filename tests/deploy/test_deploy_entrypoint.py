"""The image's command, run outside Docker on the tiny checkpoint, serves and stops cleanly.

The command is the Dockerfile's ENTRYPOINT, read from the file, with only the
container-only parts mapped to this machine: the image's python and /app
become the repo's venv python and checkout, the read-only mount becomes the
tiny checkpoint (through SOW_QWEN3_MODEL_PATH), and the published ports become
free loopback ports. The environment is the image's ENV plus the compose
service's, as `docker compose up` would give it. The image's HEALTHCHECK
command is run against it too.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from deploy_files import REPO, compose_service, dockerfile_stages, env_pairs, exec_form
from server_process import RunningServer, free_ports, http_status
from support.audio import speech
from support.infer import align_http

pytestmark = pytest.mark.server

SERVE = REPO / "scripts" / "serve.py"
KEY = "deploy-test-key"
# Image paths with no meaning outside the image; serve.py puts the venv first on PATH itself.
IMAGE_ONLY_ENV = {"PATH", "VIRTUAL_ENV"}


def require_serve() -> None:
    if not SERVE.exists():
        pytest.skip("scripts/serve.py does not exist yet: the image's command cannot run without it")


def image_command(http: int, grpc: int, metrics: int, server_id: str) -> list[str]:
    """The ENTRYPOINT with container paths mapped to this checkout and the ports moved to loopback ones."""
    runtime = dockerfile_stages()[1][-1]
    workdir = runtime.last("WORKDIR").rstrip("/") + "/"
    command = exec_form(runtime.last("ENTRYPOINT"))
    assert command[0] == "python"
    command = [sys.executable] + [str(REPO / arg[len(workdir):]) if arg.startswith(workdir) else arg for arg in command[1:]]
    host = command.index("--host") + 1
    assert command[host] == "0.0.0.0"
    command[host] = "127.0.0.1"
    return command + ["--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--id", server_id]


def image_environment(model_dir: Path, api_key: str | None) -> dict[str, str]:
    """This process's environment without SOW_QWEN3_*, plus the image's ENV and the compose service's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("SOW_QWEN3_")}
    for args in dockerfile_stages()[1][-1].all("ENV"):
        env.update({key: value for key, value in env_pairs(args).items() if key not in IMAGE_ONLY_ENV})
    service_env = compose_service({"SOW_QWEN3_API_KEY": api_key or "unused"})["environment"]
    env.update({name: str(value) for name, value in service_env.items()})
    if api_key is None:
        del env["SOW_QWEN3_API_KEY"]
    env["SOW_QWEN3_MODEL_PATH"] = str(model_dir)  # what the read-only mount provides in the container
    return env


def healthcheck_status(http_port: int) -> int:
    """Exit status of the image's HEALTHCHECK command, pointed at ``http_port``."""
    probe = exec_form(dockerfile_stages()[1][-1].last("HEALTHCHECK").partition(" CMD ")[2])
    assert probe[0] == "python"
    probe = [sys.executable] + [arg.replace("127.0.0.1:8000", f"127.0.0.1:{http_port}") for arg in probe[1:]]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode


def reports_id(http_port: int, server_id: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2", timeout=2) as response:
            return json.load(response).get("name") == server_id
    except (OSError, ValueError):
        return False


def test_image_command_refuses_to_start_without_an_api_key(tiny_model_dir):
    require_serve()
    command = image_command(*free_ports(3), server_id="no-key")
    result = subprocess.run(command, env=image_environment(tiny_model_dir, None), cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "no API key" in result.stderr


def test_image_command_becomes_ready_and_stops_cleanly(tiny_model_dir, server_logs):
    require_serve()
    http, grpc, metrics = free_ports(3)
    server_id = f"sow-qwen3-deploy-{uuid.uuid4().hex[:8]}"
    log_path = server_logs / f"{server_id}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(image_command(http, grpc, metrics, server_id), stdout=log, stderr=subprocess.STDOUT,
                                   env=image_environment(tiny_model_dir, KEY), cwd=REPO)
    server = RunningServer(process, server_id, http, grpc, metrics, log_path, KEY)
    try:
        deadline = time.monotonic() + 180
        while not (reports_id(http, server_id) and server.is_ready()):
            assert process.poll() is None, f"exited with {process.returncode}:\n{server.log()[-4000:]}"
            assert time.monotonic() < deadline, f"not ready after 180 s:\n{server.log()[-4000:]}"
            time.sleep(0.2)  # polling interval
        server.shm_files = server.mapped_shm_files()

        assert healthcheck_status(http) == 0
        assert http_status(f"http://127.0.0.1:{metrics}/metrics") == 200
        # Auth is on: the model-repository API and inference need the key.
        index = f"http://127.0.0.1:{http}/v2/repository/index"
        assert post_status(index, {}) == 403
        assert post_status(index, {"api-key": KEY}) == 200
        assert post_status(f"http://127.0.0.1:{http}/v2/models/qwen3_aligner/infer", {}) == 403
        lines = align_http(server.http_url, speech(3.0), "奇异恩典\n何等甘甜", "Chinese", headers={"api-key": KEY})
        assert lines.text == ["奇异恩典", "何等甘甜"]
    finally:
        status = server.stop()
    assert status == 0, f"exit status {status}:\n{server.log()[-3000:]}"
    assert server.leftover_processes == [] and server.leftover_shm == []
    assert healthcheck_status(http) != 0


def post_status(url: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
