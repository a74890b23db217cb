"""The real image, built from the Dockerfile as shipped and run by docker-compose.yml on a real Docker engine.

The stack is the compose file's two services (the aligner and the nginx proxy
in front of it) on the tiny checkpoint, mounted read-only. Requests go to the
proxy's published ports, as a user's would, and must give what a server
started outside Docker gives. The last test stops the stack and checks it
stopped cleanly. Skipped, with the reason, where no Docker engine is reachable.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from sow_aligner.amx_attention import AMX_ATTENTION, cpu_has_amx
from sow_aligner.decoder_compile import CONTIGUOUS_SDPA
from sow_qwen3_server.launcher import max_input_bytes
from sow_qwen3_tools.docker_stack import Compose, build_image, docker, engine_problem
from sow_qwen3_tools.local_server import free_ports, http_status
from support.audio import speech
from support.infer import MODEL, align_grpc, align_http, starts

pytestmark = [pytest.mark.docker, pytest.mark.server]  # runs tritonserver (in the image)

KEY = "image-test-key-7c0d"
LYRICS = "奇异恩典 何等甘甜\n我罪已得赦免\n前我失丧 今被寻回"
GiB = 1024**3
UID = "10001"


@pytest.fixture(scope="module")
def image() -> str:
    problem = engine_problem()
    if problem:
        pytest.skip(f"{problem}: the image tests need a Docker engine (.ci/run starts one)")
    started = time.monotonic()
    tag, size_gb = build_image()
    print(f"\nbuilt {tag}: {size_gb:.2f} GB in {time.monotonic() - started:.0f} s")
    return tag


def stack_variables(image: str, checkpoint: Path, http: int, grpc: int, metrics: int) -> dict[str, str]:
    return {
        "SOW_QWEN3_IMAGE": image, "SOW_QWEN3_API_KEY": KEY, "SOW_QWEN3_MODEL_HOST_PATH": str(checkpoint),
        # The host has 2 CPUs: a quota of 1 shows up as 1 torch thread only if the model reads it.
        "SOW_QWEN3_CPUS": "1",
        # The same dtype as the server outside Docker it is compared with (tests/conftest.py, TEST_DTYPE).
        "SOW_QWEN3_DTYPE": os.environ["SOW_QWEN3_DTYPE"],
        "SOW_QWEN3_HTTP_PORT": str(http), "SOW_QWEN3_GRPC_PORT": str(grpc), "SOW_QWEN3_METRICS_PORT": str(metrics),
    }


@pytest.fixture(scope="module")
def stack(image: str, readable_checkpoint: Path):
    """``docker compose up --wait``: both services healthy. Torn down at the end whatever happened."""
    http, grpc, metrics = free_ports(3)
    compose = Compose(stack_variables(image, readable_checkpoint, http, grpc, metrics),
                      ports={"http": http, "grpc": grpc, "metrics": metrics})
    try:
        started = time.monotonic()
        result = compose.run("up", "--detach", "--no-build", "--wait", "--wait-timeout", "300", timeout=400, check=False)
        assert result.returncode == 0, f"{result.stderr[-3000:]}\n{compose.logs('aligner')[-4000:]}"
        print(f"\ncompose up --wait: healthy in {time.monotonic() - started:.1f} s")
        yield compose
    finally:
        compose.down()


def test_the_image_runs_the_installed_package_and_refuses_to_start_without_a_key(image):
    installed = docker("run", "--rm", "--entrypoint", "python", image, "-c",
                       "import sow_qwen3_server.launcher as launcher; print(launcher.__file__)").stdout.strip()
    assert installed.startswith("/opt/venv/lib/") and installed.endswith("/site-packages/sow_qwen3_server/launcher.py")
    refused = docker("run", "--rm", image, check=False)
    assert refused.returncode == 2 and "no API key" in refused.stderr, refused.stderr[-2000:]


def test_both_services_are_healthy_and_only_the_proxy_is_published(stack):
    for service in ("aligner", "proxy"):
        state = stack.inspect(service)["State"]
        assert state["Status"] == "running" and state["Health"]["Status"] == "healthy", (service, state)
    assert stack.inspect("aligner")["NetworkSettings"]["Ports"].get("8000/tcp") is None
    published = stack.inspect("proxy")["NetworkSettings"]["Ports"]
    assert published["8080/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(stack.ports["http"])}]
    assert published["8081/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(stack.ports["grpc"])}]
    assert http_status(f"http://127.0.0.1:{stack.ports['metrics']}/metrics") == 200


def test_alignment_through_the_published_ports_equals_a_server_outside_docker(stack, triton_server):
    clip = speech(6.0)
    outside = align_http(triton_server.http_url, clip, LYRICS, "Chinese")
    assert len(set(starts(outside))) >= 2  # the tiny model's times vary, so equality below means something
    http_url, grpc_url = f"127.0.0.1:{stack.ports['http']}", f"127.0.0.1:{stack.ports['grpc']}"
    assert align_http(http_url, clip, LYRICS, "Chinese", headers={"api-key": KEY}) == outside
    assert align_grpc(grpc_url, clip, LYRICS, "Chinese", headers={"triton-grpc-protocol-api-key": KEY}) == outside


def test_the_proxy_refuses_a_body_over_the_default_cap(stack):
    """Content-Length alone decides: nginx answers 413 before reading (or forwarding) any of the body."""
    connection = http.client.HTTPConnection("127.0.0.1", stack.ports["http"], timeout=30)
    try:
        connection.putrequest("POST", f"/v2/models/{MODEL}/infer")
        connection.putheader("Content-Length", str(max_input_bytes(300) + 1))
        connection.putheader("api-key", KEY)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413 and b"request body too large" in response.read()
    finally:
        connection.close()


def test_every_process_of_both_services_runs_as_uid_10001(stack):
    for service, expected in (("aligner", {"tritonserver", "triton_python_b"}), ("proxy", {"nginx"})):
        table = docker("top", stack.container(service), "-o", "pid,uid,comm").stdout.splitlines()[1:]
        rows = [line.split(None, 2)[1:] for line in table]
        assert rows and all(uid == UID for uid, _ in rows), (service, rows)
        assert expected <= {command.strip() for _, command in rows}, (service, rows)


def test_the_server_and_its_model_stubs_run_on_tcmalloc(stack):
    """The image installs it and sow-qwen3-serve preloads it (launcher.allocator_preload)."""
    script = ("import json, pathlib\n"
              "found = {}\n"
              "for proc in pathlib.Path('/proc').glob('[0-9]*'):\n"
              "    try:\n"
              "        name = (proc / 'comm').read_text().strip()\n"
              "        if name in ('tritonserver', 'triton_python_b'):\n"
              "            found[proc.name] = [name, 'libtcmalloc_minimal' in (proc / 'maps').read_text()]\n"
              "    except OSError:\n"
              "        pass\n"
              "print(json.dumps(found))\n")
    found = json.loads(docker("exec", stack.container("aligner"), "python", "-c", script).stdout)
    assert sorted(name for name, _ in found.values()).count("triton_python_b") >= 2, found
    assert all(preloaded for _, preloaded in found.values()), found


def test_limits_are_in_force_and_the_model_sees_them(stack):
    host = stack.inspect("aligner")["HostConfig"]
    assert host["Memory"] == 8 * GiB and host["NanoCpus"] == 1_000_000_000
    log = stack.logs("aligner")
    # The model read its cgroup (v1 or v2): 8 GiB, not the host's memory; 1 CPU, not the host's 2.
    assert "memory limit 8.0 GiB" in log and "torch threads 1," in log, log[-3000:]


def test_stop_is_clean_within_the_grace_period(stack):
    """Last in this module: ``docker compose stop`` (what ``down`` does first) ends both services with status 0."""
    started = time.monotonic()
    stack.run("stop", timeout=120)
    took = time.monotonic() - started
    for service in ("proxy", "aligner"):
        state = stack.inspect(service)["State"]
        assert state["ExitCode"] == 0 and not state["OOMKilled"], (service, state, stack.logs(service)[-2000:])
    assert took < 40, f"stop took {took:.1f} s, the grace period is 40 s"
    print(f"\ncompose stop: {took:.1f} s")


def test_the_image_compiles_the_decoder_in_bfloat16(image, readable_checkpoint):
    """The image has what torch.compile and the AMX attention kernel need (g++, the kernel's source, a writable
    /tmp even on a read-only root, as the Kubernetes pod runs it): the engine, loaded as the model loads it, in
    bfloat16 on CPU, runs its decoder compiled, on a CPU with AMX (as this host's, if it has one) its
    attention on the kernel, its audio front end's GELUs inside the convolutions and its encoder's biases inside
    the matmuls."""
    script = (
        "from pathlib import Path\n"
        "from sow_aligner import settings\n"
        "from sow_aligner.decoder_compile import is_compiled\n"
        "from sow_aligner.engine import AlignmentEngine\n"
        "from sow_qwen3_server.launcher import config_parameters\n"
        "parameters = {**config_parameters(Path('/app/model_repository')), 'dtype': 'bfloat16', 'device': 'cpu'}\n"
        "engine = AlignmentEngine.load(settings.resolve(parameters, {}))\n"
        "thinker = engine.aligner.model.thinker\n"
        "print('compiled' if is_compiled(thinker) else 'uncompiled', thinker.model.config._attn_implementation,\n"
        "      'fused' if 'forward' in vars(thinker.audio_tower) else 'two-step',\n"
        "      'bias' if 'forward' in vars(thinker.audio_tower.layers[0].fc1) else 'addmm')\n"
    )
    # The pod's writable folders (deploy/kubernetes/base/deployment.yaml): /tmp and the caches under the home,
    # emptyDirs, where files may be executed (the compiled kernels are loaded from /tmp); Docker's tmpfs is
    # noexec unless told.
    result = docker("run", "--rm", "--read-only", "--tmpfs", "/tmp:exec", "--tmpfs", "/home/aligner/.cache:mode=1777",
                    "--cpus", "1",
                    "--mount", f"type=bind,source={readable_checkpoint},target=/models/qwen3-forced-aligner,readonly",
                    "--entrypoint", "python", image, "-c", script, timeout=300, check=False)
    expected = f"compiled {AMX_ATTENTION if cpu_has_amx() else CONTIGUOUS_SDPA} fused bias"
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == expected, \
        (result.stdout[-2000:], result.stderr[-3000:])


def test_an_unreadable_checkpoint_leaves_the_aligner_up_unhealthy_and_not_restarting(image, tiny_model_dir, tmp_path):
    """A folder only root may read (mode 0700): the log names the path and the cause, and nothing restarts."""
    private = tmp_path / "private-checkpoint"
    shutil.copytree(tiny_model_dir, private)
    private.chmod(0o700)
    compose = Compose(stack_variables(image, private, *free_ports(3)))
    try:
        compose.run("up", "--detach", "--no-build", "aligner", timeout=300)
        cause = f"loading failed: permission denied: /models/qwen3-forced-aligner is not readable by uid {UID}"
        # Triton opens its ports only once the load has been tried: a health check answered with
        # HTTP 400 means the server is up after the failure (one that exits never answers).
        deadline = time.monotonic() + 300
        while not any("400" in check["Output"] for check in compose.inspect("aligner")["State"]["Health"]["Log"]):
            state = compose.inspect("aligner")
            assert state["RestartCount"] == 0 and time.monotonic() < deadline, (state["State"], compose.logs("aligner")[-3000:])
            time.sleep(1)  # polling interval: the health check runs every 15 s
        state = compose.inspect("aligner")
        assert state["State"]["Status"] == "running" and state["RestartCount"] == 0, state["State"]
        assert state["State"]["Health"]["Status"] != "healthy"
        log = compose.logs("aligner")
        assert cause in log and "FileNotFoundError" not in log, log[-3000:]
    finally:
        compose.down()
