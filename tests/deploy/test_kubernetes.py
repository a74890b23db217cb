"""deploy/kubernetes is valid Kubernetes and runs what docker-compose.yml runs.

Offline: the manifests are checked against the API schemas that the pinned
kubernetes-validate package carries, for the oldest Kubernetes these files
need (1.30: native sidecars and the preStop sleep action are on by default)
and the newest it knows. The kustomizations are built in Python
(kustomize_build, checked against ``kubectl kustomize`` where kubectl is
installed), and what compose asks of each container is read from
docker-compose.yml (compose_view), so a change on either side that the other
does not follow fails here.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
from compose_view import (
    API_KEY_VARIABLE,
    ComposeContainer,
    compose_containers,
    proxy_container,
    server_container,
)
from deploy_files import MODEL_MOUNT, REPO, dockerfile_stages, exec_form
from kustomize_build import (
    KUSTOMIZATION,
    build,
    by_kind_and_name,
    container,
    effective_environment,
    find,
    kubectl_kustomize,
    load_documents,
    patch_files,
    pod_containers,
    quantity_bytes,
    quantity_cpus,
)

KUBE = REPO / "deploy" / "kubernetes"
GPU_OVERLAY = KUBE / "overlays" / "gpu"
# Oldest version the files need, and the newest schema the pinned package has.
KUBERNETES_VERSIONS = ["1.30.0", "1.37.0"]
# Files applied on their own, not through a kustomization (each documented in docs/deploy.md).
STANDALONE = {KUBE / "download-weights-job.yaml", KUBE / "base" / "hpa-queue-time.yaml"}
# Deliberate differences from compose: in a pod, Triton and the proxy share loopback.
KUBERNETES_ONLY = {"aligner": {"SOW_QWEN3_HOST": "127.0.0.1"}, "proxy": {"SOW_QWEN3_PROXY_UPSTREAM": "127.0.0.1"}}
DOWNLOAD_SCRIPT = "scripts/download_model.py"  # in the image: the server package's console script
DOWNLOAD_COMMAND = "sow-qwen3-download-model"


def manifest_files() -> list[Path]:
    """Every Kubernetes object file: all YAML under deploy/kubernetes but kustomizations and patches."""
    patches = set(patch_files(KUBE)) | set(patch_files(GPU_OVERLAY))
    return sorted(p for p in KUBE.rglob("*.yaml") if p.name != KUSTOMIZATION and p not in patches)


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def variant(request) -> dict:
    """A built kustomization and the compose files it must agree with."""
    gpu = request.param == "gpu"
    services, reader = compose_containers(gpu=gpu)
    resources = build(GPU_OVERLAY if gpu else KUBE)
    return {"name": request.param, "resources": resources, "compose": services, "reader": reader,
            "deployment": find(resources, "Deployment")}


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def compose_for(variant: dict, role: str) -> ComposeContainer | None:
    return server_container(variant["compose"]) if role == "aligner" else proxy_container(variant["compose"])


# --- schemas ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBE)))
def test_every_manifest_validates(path, version):
    documents = load_documents(path)
    assert documents, f"{path} holds no object"
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("directory", [KUBE, GPU_OVERLAY], ids=["base", "gpu-overlay"])
def test_built_kustomization_validates(directory, version):
    resources = build(directory)
    assert {r["kind"] for r in resources} >= {"ConfigMap", "PersistentVolumeClaim", "Deployment", "Service",
                                              "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    by_kind_and_name(resources)  # no object defined twice
    for resource in resources:
        kubernetes_validate.validate(resource, version, strict=True)


def test_validation_catches_a_broken_manifest():
    """The validator is strict: a misspelt field and a wrong type both fail."""
    deployment = find(build(KUBE), "Deployment")
    pod_spec(deployment)["terminationGracePeriod"] = 50
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    service = find(build(KUBE), "Service")
    service["spec"]["ports"][0]["port"] = "eight thousand"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("directory", [KUBE, GPU_OVERLAY], ids=["base", "gpu-overlay"])
def test_python_build_equals_kubectl_kustomize(directory):
    expected = kubectl_kustomize(directory)
    if expected is None:
        pytest.skip("kubectl is not installed: the Python build alone was checked")
    assert by_kind_and_name(build(directory)) == by_kind_and_name(expected)


def test_every_object_file_is_applied_or_documented():
    base_files = {KUBE / "base" / entry for entry in load_documents(KUBE / "base" / KUSTOMIZATION)[0]["resources"]}
    deploy_doc = (REPO / "docs" / "deploy.md").read_text()
    for path in manifest_files():
        if path in STANDALONE:
            assert f"`{path.relative_to(KUBE)}`" in deploy_doc, f"{path} is not explained in docs/deploy.md"
        else:
            assert path in base_files, f"{path} is neither in base/kustomization.yaml nor a documented standalone file"


# --- the same container as compose ----------------------------------------------------------------

def test_every_pod_runs_compose_images_and_the_aligner_its_entrypoint(variant):
    aligner_service = compose_for(variant, "aligner")
    for container_spec in pod_containers(variant["deployment"]):
        assert container_spec["image"] == aligner_service.image, container_spec["name"]
    aligner = container(variant["deployment"], "aligner")
    assert "command" not in aligner and "args" not in aligner, "the image's ENTRYPOINT must run unchanged"
    entrypoint = exec_form(dockerfile_stages()[1][-1].last("ENTRYPOINT"))
    assert "--require-api-key" in entrypoint
    proxy_service = compose_for(variant, "proxy")
    proxy = container(variant["deployment"], "proxy")
    assert proxy["command"] == ["sow-qwen3-proxy"]
    if proxy_service is not None:
        assert proxy["command"] == (proxy_service.command or proxy_service.entrypoint)


@pytest.mark.parametrize("role", ["aligner", "proxy"])
def test_environment_matches_compose(variant, role):
    service = compose_for(variant, role)
    if service is None:
        pytest.skip(f"docker-compose.yml has no {role} service yet (the proxy comes with branch i9-image)")
    environment = effective_environment(container(variant["deployment"], role), variant["resources"])
    for name, value in KUBERNETES_ONLY[role].items():
        assert environment.get(name) == value, name
    expected = {name: value for name, value in service.environment.items() if name not in KUBERNETES_ONLY[role]}
    if API_KEY_VARIABLE in expected:
        del expected[API_KEY_VARIABLE]
        assert environment.pop(API_KEY_VARIABLE)[0] == "secret", "the API key must come from a Secret"
    actual = {name: value for name, value in environment.items() if name not in KUBERNETES_ONLY[role]}
    assert actual == expected, f"{role}: Kubernetes and compose ({variant['reader']}) differ"


def test_api_key_secret_is_required(variant):
    env = container(variant["deployment"], "aligner")["env"]
    reference = next(e for e in env if e["name"] == API_KEY_VARIABLE)["valueFrom"]["secretKeyRef"]
    assert reference.get("optional", False) is False, "no key, no start (as compose's ${...:?})"
    for config_map in (r for r in variant["resources"] if r["kind"] == "ConfigMap"):
        assert API_KEY_VARIABLE not in config_map["data"]


def test_resources_match_compose_limits(variant):
    for role in ("aligner", "proxy"):
        service = compose_for(variant, role)
        if service is None or service.memory_bytes is None:
            continue
        resources = container(variant["deployment"], role)["resources"]
        assert quantity_bytes(resources["limits"]["memory"]) == service.memory_bytes, role
        assert quantity_cpus(resources["limits"]["cpu"]) == service.cpus, role
        if role == "aligner":  # each replica is guaranteed what one compose container may use
            assert resources["requests"]["memory"] == resources["limits"]["memory"]
            assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    aligner = container(variant["deployment"], "aligner")["resources"]
    assert (quantity_bytes(aligner["limits"]["memory"]), quantity_cpus(aligner["limits"]["cpu"])) == (8 * 2**30, 4)


def test_gpu_overlay_takes_one_gpu_as_compose_reserves_one(variant):
    aligner = container(variant["deployment"], "aligner")
    devices = compose_for(variant, "aligner").gpu_devices
    gpus = aligner["resources"]["limits"].get("nvidia.com/gpu")
    if variant["name"] == "cpu":
        assert devices == [] and gpus is None
        return
    assert [len(device.get("device_ids", [])) or int(device["count"]) for device in devices] == [1]
    assert gpus == aligner["resources"]["requests"]["nvidia.com/gpu"] == "1"
    spec = pod_spec(variant["deployment"])
    assert spec["nodeSelector"] and spec["tolerations"], "GPU nodes: a node selector and a toleration to edit"
    assert container(variant["deployment"], "aligner")["image"] != container(
        find(build(KUBE), "Deployment"), "aligner")["image"], "the CUDA image must not share the CPU image's tag"


def test_mounts_match_compose(variant):
    spec = pod_spec(variant["deployment"])
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    for role in ("aligner", "proxy"):
        service = compose_for(variant, role)
        if service is None:
            continue
        mounts = {m["mountPath"]: m for m in container(variant["deployment"], role).get("volumeMounts", [])}
        for mount in service.mounts:
            assert mount.target in mounts, f"{role}: compose mounts {mount.target}"
            assert mounts[mount.target].get("readOnly", False) == mount.read_only, mount.target
            volume = volumes[mounts[mount.target]["name"]]
            assert ("emptyDir" in volume) == (mount.kind == "tmpfs"), mount.target
        if service.shm_bytes is not None:
            shm = volumes[mounts["/dev/shm"]["name"]]["emptyDir"]
            assert shm["medium"] == "Memory" and quantity_bytes(shm["sizeLimit"]) == service.shm_bytes
        # Anything compose does not mount is scratch space for the read-only root filesystem.
        extra = set(mounts) - {m.target for m in service.mounts} - {"/dev/shm"}
        assert all("emptyDir" in volumes[mounts[path]["name"]] for path in extra), extra
    model = next(m for m in container(variant["deployment"], "aligner")["volumeMounts"] if m["mountPath"] == MODEL_MOUNT)
    claim = volumes[model["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True
    find(variant["resources"], "PersistentVolumeClaim", claim["claimName"])


def test_probes_are_compose_healthcheck(variant):
    health = compose_for(variant, "aligner").healthcheck
    assert health.test[0] == "CMD", "an exec-form healthcheck maps to an exec probe"
    ready_command = health.test[1:]
    assert "/v2/health/ready" in ready_command[-1]
    live_command = [part.replace("/v2/health/ready", "/v2/health/live") for part in ready_command]
    aligner = container(variant["deployment"], "aligner")
    for probe_name, command in [("readinessProbe", ready_command), ("livenessProbe", live_command)]:
        probe = aligner[probe_name]
        assert probe["exec"]["command"] == command, probe_name
        assert probe["periodSeconds"] == health.interval, probe_name
        assert probe["timeoutSeconds"] == health.timeout, probe_name
        assert probe["failureThreshold"] == health.retries, probe_name
    startup = aligner["startupProbe"]
    assert startup["exec"]["command"] == ready_command
    assert startup["periodSeconds"] <= (health.start_interval or health.interval)
    assert startup["periodSeconds"] * startup["failureThreshold"] >= health.start_period, "startup must cover loading"
    assert startup["timeoutSeconds"] == health.timeout
    proxy_health = getattr(compose_for(variant, "proxy"), "healthcheck", None)
    if proxy_health is not None:  # compose checks that the proxy listens; so do both probes here
        port = int(re.search(r"127\.0\.0\.1['\"]?,\s*(\d+)", proxy_health.test[-1])[1])
        proxy = container(variant["deployment"], "proxy")
        named = {p["name"]: p["containerPort"] for p in proxy["ports"]}
        for probe_name in ("readinessProbe", "livenessProbe"):
            assert named.get(proxy[probe_name]["tcpSocket"]["port"]) == port, probe_name


def test_ports_match_what_compose_publishes(variant):
    service_object = find(variant["resources"], "Service")
    published = {port.published for s in variant["compose"].values() for port in s.ports}
    assert {port["port"] for port in service_object["spec"]["ports"]} == published
    proxy = container(variant["deployment"], "proxy")
    proxy_ports = {port["name"]: port["containerPort"] for port in proxy["ports"]}
    routes = {port["port"]: proxy_ports[port["targetPort"]] for port in service_object["spec"]["ports"]}
    assert set(routes.values()) == {8080, 8081, 8082}, "the Service reaches the pods only through the proxy"
    assert "ports" not in container(variant["deployment"], "aligner"), "Triton listens on the pod's loopback only"
    proxy_service = compose_for(variant, "proxy")
    if proxy_service is None:
        pytest.skip("docker-compose.yml has no proxy service yet: published ports checked, proxy targets not")
    assert routes == {port.published: port.target for port in proxy_service.ports}


def test_security_context_is_hardened_as_compose(variant):
    aligner_service = compose_for(variant, "aligner")
    assert "ALL" in aligner_service.cap_drop and "no-new-privileges:true" in aligner_service.security_opt
    user = dockerfile_stages()[1][-1].last("USER").split(":")
    for workload in (variant["deployment"], *load_documents(KUBE / "download-weights-job.yaml")):
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert [str(pod_security["runAsUser"]), str(pod_security["runAsGroup"])] == user
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        for container_spec in pod_containers(workload):
            security = container_spec["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, container_spec["name"]
            assert security["readOnlyRootFilesystem"] is True, container_spec["name"]
            assert security["capabilities"] == {"drop": ["ALL"]}, container_spec["name"]


def test_grace_period_covers_the_drain(variant):
    spec = pod_spec(variant["deployment"])
    aligner = container(variant["deployment"], "aligner")
    pause = aligner["lifecycle"]["preStop"]["sleep"]["seconds"]
    exit_timeout = int(effective_environment(aligner, variant["resources"])["SOW_QWEN3_EXIT_TIMEOUT"])
    service = compose_for(variant, "aligner")
    assert service.stop_grace_seconds > exit_timeout
    assert spec["terminationGracePeriodSeconds"] - pause >= service.stop_grace_seconds
    # compose's init: true (tini reaps orphaned stubs) is the pod's shared PID namespace here.
    assert spec.get("shareProcessNamespace", False) == service.init


# --- the objects fit together ---------------------------------------------------------------------

def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_service_pdb_and_autoscalers_select_the_aligner_pods():
    resources = build(KUBE)
    deployment = find(resources, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    assert labels_match(find(resources, "Service")["spec"]["selector"], pod_labels)
    assert labels_match(find(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels)
    job = load_documents(KUBE / "download-weights-job.yaml")[0]
    assert not labels_match(find(resources, "Service")["spec"]["selector"], job["spec"]["template"]["metadata"]["labels"])
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    cpu_hpa = find(resources, "HorizontalPodAutoscaler")
    queue_hpa = load_documents(KUBE / "base" / "hpa-queue-time.yaml")[0]
    for hpa in (cpu_hpa, queue_hpa):
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
        assert hpa["metadata"]["name"] == cpu_hpa["metadata"]["name"], "the variant replaces the CPU HPA"
        assert 1 < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    [metric] = cpu_hpa["spec"]["metrics"]
    assert metric["containerResource"]["name"] == "cpu"
    container(deployment, metric["containerResource"]["container"])
    assert find(resources, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_prometheus_scrapes_each_pods_metrics_port():
    deployment = find(build(KUBE), "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    metrics_port = next(p for p in container(deployment, "proxy")["ports"] if p["name"] == "metrics")
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == metrics_port["containerPort"]
    assert annotations["prometheus.io/path"] == "/metrics"


# --- the weights ----------------------------------------------------------------------------------

def console_script(name: str) -> str:
    """``name`` as the server package declares it (the image installs the package, so it is on PATH there)."""
    scripts = tomllib.loads((REPO / "server" / "pyproject.toml").read_text())["project"]["scripts"]
    assert name in scripts, f"server/pyproject.toml declares no console script {name}"
    return name


def test_download_job_fills_the_volume_the_replicas_read():
    resources = build(KUBE)
    deployment = find(resources, "Deployment")
    script = console_script(DOWNLOAD_COMMAND)
    [job] = load_documents(KUBE / "download-weights-job.yaml")
    [download] = pod_containers(job)
    assert download["command"] == [script, "--dest", MODEL_MOUNT]
    job_volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    mount = next(m for m in download["volumeMounts"] if m["mountPath"] == MODEL_MOUNT)
    assert not mount.get("readOnly", False), "the Job writes the weights"
    replica_claim = next(v for v in pod_spec(deployment)["volumes"] if "persistentVolumeClaim" in v)
    assert job_volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == replica_claim["persistentVolumeClaim"]["claimName"]
    assert download["image"] == container(deployment, "aligner")["image"]
    wait = container(deployment, "wait-for-weights")
    assert f"{script} --verify-only --dest {MODEL_MOUNT}" in wait["command"][-1]


def test_wait_for_weights_command_fails_on_an_empty_volume_and_passes_on_a_checkpoint(tmp_path, tiny_model_dir):
    """The init container's check, run for real: it holds the pod until the checkpoint verifies."""
    script = REPO / DOWNLOAD_SCRIPT
    empty = subprocess.run([sys.executable, str(script), "--verify-only", "--dest", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1 and "missing config.json" in empty.stderr, empty.stderr
    ready = subprocess.run([sys.executable, str(script), "--verify-only", "--dest", str(tiny_model_dir)],
                           capture_output=True, text=True, timeout=120)
    assert ready.returncode == 0, ready.stderr
    assert "timestamp head" in ready.stdout


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_compose_readers_agree(gpu):
    """The PyYAML reading (used where no Compose CLI exists) equals ``compose config``'s."""
    from compose_view import COMPOSE, COMPOSE_GPU, config_from_yaml, normalise_service
    services, reader = compose_containers(gpu=gpu)
    if reader != "compose config":
        pytest.skip("no Compose v2+ CLI here: only the PyYAML reading ran")
    parsed = config_from_yaml([COMPOSE, COMPOSE_GPU] if gpu else [COMPOSE])["services"]
    assert {name: normalise_service(name, service) for name, service in parsed.items()} == services
