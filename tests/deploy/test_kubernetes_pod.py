"""The Deployment's pod runs for real: deploy/kubernetes's pod spec, translated to the Docker engine.

The image is the one compose builds: SOW_QWEN3_K8S_TEST_IMAGE when set,
else the image the ``docker`` tests build (docker_stack.build_image, from the
image branch). Weights: the tiny checkpoint, readable by the pod's fsGroup as
a volume would be. Skipped without a Docker engine or an image.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from kustomize_build import build, container, find
from pod_in_docker import DockerPod

from sow_qwen3_tools.docker_stack import build_image, docker, engine_problem
from support.audio import speech
from support.infer import align_grpc, align_http, starts

pytestmark = [pytest.mark.docker, pytest.mark.server]  # runs tritonserver (in the image)

KUBE = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KEY = "k8s-pod-test-key"
LYRICS = "第一行歌词\n第二行歌词\nthird line"


@pytest.fixture(scope="module")
def image() -> str:
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    return os.environ.get("SOW_QWEN3_K8S_TEST_IMAGE") or build_image()[0]


@pytest.fixture(scope="module")
def volume(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint as the weights claim holds it: world-readable, like a volume with fsGroup."""
    folder = tmp_path_factory.mktemp("k8s-weights") / "checkpoint"
    shutil.copytree(tiny_model_dir, folder)
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    folder.parent.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def pod(image: str, volume: Path):
    resources = build(KUBE)
    # The same dtype as the server outside the pod it is compared with (tests/conftest.py, TEST_DTYPE).
    find(resources, "ConfigMap", "sow-qwen3-settings")["data"]["SOW_QWEN3_DTYPE"] = os.environ["SOW_QWEN3_DTYPE"]
    running = DockerPod(find(resources, "Deployment"), resources, image, volume,
                        secrets={("sow-qwen3-api-key", "SOW_QWEN3_API_KEY"): KEY})
    try:
        running.start_holder()
        init_result = running.run_init(container(running.deployment, "wait-for-weights"), timeout=300)
        assert init_result.returncode == 0, init_result.stdout + init_result.stderr
        proxy = container(running.deployment, "proxy")
        running.start(proxy)  # the native sidecar starts before the main container
        aligner = container(running.deployment, "aligner")
        running.start(aligner)
        running.started_after = running.wait_started(aligner)
        yield running
    finally:
        running.remove()


def test_aligner_passes_its_probes_with_a_read_only_root(pod):
    aligner = container(pod.deployment, "aligner")
    assert pod.exec_probe(aligner, aligner["readinessProbe"])
    assert pod.exec_probe(aligner, aligner["livenessProbe"])
    proxy = container(pod.deployment, "proxy")
    assert pod.tcp_probe(proxy, proxy["readinessProbe"]) and pod.tcp_probe(proxy, proxy["livenessProbe"])
    # The probe budget is honest: loading took well under it.
    startup = aligner["startupProbe"]
    assert pod.started_after < startup["periodSeconds"] * startup["failureThreshold"]


def test_alignment_through_the_proxy_equals_a_server_outside_the_pod(pod, triton_server):
    clip = speech(6.0)
    outside = align_http(triton_server.http_url, clip, LYRICS, "Chinese")
    assert len(set(starts(outside))) >= 2  # the tiny model's times vary, so equality below means something
    assert align_http(f"127.0.0.1:{pod.published[8080]}", clip, LYRICS, "Chinese", headers={"api-key": KEY}) == outside
    assert align_grpc(f"127.0.0.1:{pod.published[8081]}", clip, LYRICS, "Chinese",
                      headers={"triton-grpc-protocol-api-key": KEY}) == outside


def test_only_the_proxy_is_reachable_from_outside_the_pod(pod):
    """From another container on the same network: the proxy's 8080 answers, Triton's 8000 does not."""
    address = pod.address()
    probe = ("import socket, sys\n"
             "def reach(port):\n"
             "    try: socket.create_connection((sys.argv[1], port), timeout=5).close(); return 'open'\n"
             "    except OSError: return 'closed'\n"
             "print(reach(8080), reach(8000), reach(8001))")
    result = docker("run", "--rm", "--entrypoint", "python", pod.image, "-c", probe, address)
    assert result.stdout.split() == ["open", "closed", "closed"], result.stdout + result.stderr


def test_metrics_are_served_through_the_proxy(pod):
    with socket.create_connection(("127.0.0.1", pod.published[8082]), timeout=10) as connection:
        connection.sendall(b"GET /metrics HTTP/1.0\r\nHost: pod\r\n\r\n")
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.1 200") and b"nv_inference_request_success" in answer


def test_wait_for_weights_holds_the_pod_until_the_checkpoint_arrives(pod, tiny_model_dir, tmp_path):
    """On an empty volume the init container keeps waiting; once the files are there it ends by itself."""
    arriving = tmp_path / "arriving-volume"
    arriving.mkdir()
    arriving.chmod(0o755)
    tmp_path.chmod(0o755)
    waiting = DockerPod(pod.deployment, pod.resources, pod.image, arriving, pod.secrets, name=f"{pod.name}-empty")
    init = container(waiting.deployment, "wait-for-weights")
    try:
        waiting.start_holder()
        docker("run", "--detach", *waiting.run_options(init), waiting.image, *waiting.arguments(init))
        with subprocess.Popen(["docker", "logs", "--follow", waiting.container_name(init)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) as follow:
            seen = []
            for line in follow.stdout:  # event: the first "waiting" line, no timed sleep
                seen.append(line)
                if "waiting for the weights" in line:
                    break
            follow.terminate()
        assert any("is missing config.json" in line for line in seen), seen
        assert docker("inspect", "--format", "{{.State.Running}}", waiting.container_name(init)).stdout.strip() == "true"
        shutil.copytree(tiny_model_dir, arriving, dirs_exist_ok=True)
        for path in [arriving, *arriving.rglob("*")]:  # copytree copied the source folder's mode too
            path.chmod(0o755 if path.is_dir() else 0o644)
        try:  # the loop checks every 20 s; verifying takes seconds
            ended = docker("wait", waiting.container_name(init), timeout=90).stdout.strip()
        except subprocess.TimeoutExpired:
            ended = "still running"
        assert ended == "0", waiting.logs(init)[-3000:]
    finally:
        waiting.remove()


def test_sigterm_drains_and_exits_cleanly_within_the_grace_period(pod):
    aligner = container(pod.deployment, "aligner")
    grace = pod.spec["terminationGracePeriodSeconds"] - aligner["lifecycle"]["preStop"]["sleep"]["seconds"]
    code, took = pod.stop(aligner, grace)
    assert code == 0, pod.logs(aligner)[-3000:]
    assert took < grace
