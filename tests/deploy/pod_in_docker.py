"""Run a Deployment's pod from deploy/kubernetes with the real Docker engine, as a kubelet would.

No Kubernetes runs here, so the pod is translated field by field into
``docker run`` options: a holder container owns the pod's network (and,
with ``shareProcessNamespace``, its PID namespace) like the pause container;
every container joins it with the user, read-only root filesystem, dropped
capabilities, no-new-privileges, environment (ConfigMaps resolved, the API
key Secret given by the test), limits and volumes of its spec. emptyDirs
become tmpfs mounts, the memory-backed one at /dev/shm becomes ``--shm-size``,
and the weights claim becomes a read-only bind of a checkpoint folder.
Init containers run to completion first, then native sidecars start, then
the main containers. Probes are run the way the kubelet runs them: exec
probes with ``docker exec``, tcpSocket probes as a connection to the pod.

What the translation cannot show: scheduling, the Service, the autoscaler
and the preStop hook (checked offline in test_kubernetes.py).
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kustomize_build import effective_environment, quantity_bytes, quantity_cpus

from sow_qwen3_tools.docker_stack import docker

HOLDER_COMMAND = ["sleep", "infinity"]


@dataclass
class DockerPod:
    """One pod of ``deployment`` on the Docker engine, named uniquely per run."""

    deployment: dict
    resources: list[dict]
    image: str
    weights_dir: Path
    secrets: dict[tuple[str, str], str]
    name: str = field(default_factory=lambda: f"sow-qwen3-k8s-pod-{uuid.uuid4().hex[:8]}")
    published: dict[int, int] = field(default_factory=dict)  # container port -> host port

    @property
    def spec(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    def container_name(self, container: dict) -> str:
        return f"{self.name}-{container['name']}"

    def start_holder(self) -> None:
        """The pause container: owns the network (publishing the pod's container ports on loopback) and PIDs."""
        containers = self.spec.get("initContainers", []) + self.spec["containers"]
        ports = [p["containerPort"] for c in containers for p in c.get("ports", [])]
        publish = [arg for port in ports for arg in ("--publish", f"127.0.0.1::{port}")]
        security = self.spec["securityContext"]
        docker("run", "--detach", "--name", f"{self.name}-holder", "--init", "--read-only", "--cap-drop", "ALL",
               "--user", f"{security['runAsUser']}:{security['runAsGroup']}", *publish,
               "--entrypoint", HOLDER_COMMAND[0], self.image, *HOLDER_COMMAND[1:])
        for port in ports:
            host = docker("port", f"{self.name}-holder", f"{port}/tcp").stdout.split("\n")[0].rsplit(":", 1)[1]
            self.published[port] = int(host)

    def run_options(self, container: dict) -> list[str]:
        """``docker run`` options for ``container`` of this pod's spec."""
        pod_security, security = self.spec["securityContext"], container.get("securityContext", {})
        options = ["--name", self.container_name(container), "--network", f"container:{self.name}-holder",
                   "--user", f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}",
                   "--group-add", str(pod_security["fsGroup"])]
        if self.spec.get("shareProcessNamespace"):
            options += ["--pid", f"container:{self.name}-holder"]
        if security.get("readOnlyRootFilesystem"):
            options.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            options += ["--security-opt", "no-new-privileges:true"]
        options += [arg for capability in security.get("capabilities", {}).get("drop", []) for arg in ("--cap-drop", capability)]
        limits = container.get("resources", {}).get("limits", {})
        if "memory" in limits:
            options += ["--memory", str(quantity_bytes(limits["memory"]))]
        if "cpu" in limits:  # Docker refuses more CPUs than the host has
            options += ["--cpus", str(min(quantity_cpus(limits["cpu"]), os.cpu_count() or 1))]
        for name, value in effective_environment(container, self.resources).items():
            value = self.secrets[(value[1], value[2])] if isinstance(value, tuple) else value
            options += ["--env", f"{name}={value}"]
        volumes = {volume["name"]: volume for volume in self.spec["volumes"]}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                mode = "ro" if mount.get("readOnly") or volume["persistentVolumeClaim"].get("readOnly") else "rw"
                options += ["--volume", f"{self.weights_dir}:{mount['mountPath']}:{mode}"]
            elif volume["emptyDir"].get("medium") == "Memory" and mount["mountPath"] == "/dev/shm":
                options += ["--shm-size", str(quantity_bytes(volume["emptyDir"]["sizeLimit"]))]
            else:
                size = quantity_bytes(volume["emptyDir"].get("sizeLimit", "64Mi"))
                options += ["--tmpfs", f"{mount['mountPath']}:rw,exec,mode=1777,size={size}"]
        if "command" in container:
            options += ["--entrypoint", container["command"][0]]
        return options

    def arguments(self, container: dict) -> list[str]:
        return [*container.get("command", [])[1:], *container.get("args", [])]

    def run_init(self, container: dict, timeout: float) -> subprocess.CompletedProcess:
        """An ordinary init container, to completion."""
        return docker("run", "--rm", *self.run_options(container), self.image, *self.arguments(container),
                      timeout=timeout, check=False)

    def start(self, container: dict) -> None:
        docker("run", "--detach", *self.run_options(container), self.image, *self.arguments(container))

    def logs(self, container: dict) -> str:
        result = docker("logs", self.container_name(container), check=False)
        return result.stdout + result.stderr

    def exec_probe(self, container: dict, probe: dict) -> bool:
        """One run of an exec probe, with its timeout."""
        try:
            result = docker("exec", self.container_name(container), *probe["exec"]["command"],
                            timeout=probe.get("timeoutSeconds", 1) + 10, check=False)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def tcp_probe(self, container: dict, probe: dict) -> bool:
        port = probe["tcpSocket"]["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in container["ports"] if p["name"] == port)
        try:
            socket.create_connection(("127.0.0.1", self.published[port]), timeout=probe.get("timeoutSeconds", 1)).close()
        except OSError:
            return False
        return True

    def wait_started(self, container: dict) -> float:
        """Run the startup probe as the kubelet does (every periodSeconds, at most failureThreshold times);
        return the seconds it took, or raise when the probe's budget runs out."""
        probe = container["startupProbe"]
        began = time.monotonic()
        for _ in range(probe.get("failureThreshold", 3)):
            if self.exec_probe(container, probe):
                return time.monotonic() - began
            running = docker("inspect", "--format", "{{.State.Running}}", self.container_name(container)).stdout.strip()
            assert running == "true", f"{container['name']} exited:\n{self.logs(container)[-3000:]}"
            time.sleep(probe.get("periodSeconds", 10))  # the probe's own period, as the kubelet waits
        raise AssertionError(f"startup probe of {container['name']} never passed:\n{self.logs(container)[-3000:]}")

    def stop(self, container: dict, grace: int) -> tuple[int, float]:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code and the seconds it took."""
        began = time.monotonic()
        docker("stop", "--time", str(grace), self.container_name(container), timeout=grace + 60)
        code = int(docker("inspect", "--format", "{{.State.ExitCode}}", self.container_name(container)).stdout)
        return code, time.monotonic() - began

    def address(self) -> str:
        """The pod's IP on the Docker bridge."""
        return docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", f"{self.name}-holder").stdout.strip()

    def remove(self) -> None:
        names = [self.container_name(c) for c in self.spec.get("initContainers", []) + self.spec["containers"]]
        docker("rm", "--force", "--volumes", *names, f"{self.name}-holder", check=False, timeout=180)
