"""Build deploy/kubernetes kustomizations in Python, offline, the way ``kubectl kustomize`` does.

Only the kustomize features our files use are implemented: ``resources``
(files and directories), ``labels`` on metadata only, ``images`` and
``patches`` written as JSON 6902 operations (applied with the ``jsonpatch``
library) with a kind/name target. Any other field of a kustomization, or a
strategic-merge patch, raises ``UnsupportedKustomization`` instead of being
silently ignored, so the tests never check something other than what
kustomize would apply. Where kubectl is installed, the tests compare this
build with ``kubectl kustomize``.
"""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

KUSTOMIZATION = "kustomization.yaml"
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "labels", "images", "patches"}
MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "": 1}


class UnsupportedKustomization(ValueError):
    """A kustomization uses a feature this builder does not implement."""


def load_documents(path: Path) -> list[dict]:
    """The non-empty YAML documents of ``path``."""
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def read_kustomization(directory: Path) -> dict:
    """``directory``'s kustomization.yaml, refusing fields this builder does not implement."""
    kustomization = yaml.safe_load((directory / KUSTOMIZATION).read_text())
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise UnsupportedKustomization(f"{directory / KUSTOMIZATION}: unsupported fields {sorted(unsupported)}")
    return kustomization


def build(directory: Path) -> list[dict]:
    """The resources ``kubectl kustomize directory`` prints, in file order."""
    kustomization = read_kustomization(directory)
    resources: list[dict] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources.extend(build(path) if path.is_dir() else load_documents(path))
    for label in kustomization.get("labels", []):
        _add_labels(resources, label)
    for patch in kustomization.get("patches", []):
        resources = [_patched(resource, patch, directory) for resource in resources]
    for image in kustomization.get("images", []):
        _set_image(resources, image)
    return resources


def patch_files(directory: Path) -> list[Path]:
    """Files that ``directory``'s kustomization (and the ones it includes) uses as patches."""
    kustomization = read_kustomization(directory)
    found = [directory / patch["path"] for patch in kustomization.get("patches", []) if "path" in patch]
    for entry in kustomization.get("resources", []):
        if (directory / entry).is_dir():
            found.extend(patch_files(directory / entry))
    return found


def pod_containers(resource: dict) -> Iterator[dict]:
    """Every container (init containers included) of a Deployment's or Job's pod template."""
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def _add_labels(resources: list[dict], label: dict) -> None:
    known = {"pairs", "includeSelectors", "includeTemplates"}
    if label.get("includeSelectors") or label.get("includeTemplates") or set(label) - known:
        raise UnsupportedKustomization(f"labels entry {label}: only metadata labels are implemented")
    for resource in resources:
        resource.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])


def _matches(resource: dict, target: dict) -> bool:
    unsupported = set(target) - {"group", "version", "kind", "name"}
    if unsupported:
        raise UnsupportedKustomization(f"patch target fields {sorted(unsupported)}")
    group, _, version = resource["apiVersion"].rpartition("/")
    actual = {"group": group, "version": version, "kind": resource["kind"], "name": resource["metadata"]["name"]}
    return all(actual[key] == value for key, value in target.items())


def _patched(resource: dict, patch: dict, directory: Path) -> dict:
    if "target" not in patch:
        raise UnsupportedKustomization(f"patch without a target (strategic merge): {patch}")
    if not _matches(resource, patch["target"]):
        return resource
    operations = yaml.safe_load((directory / patch["path"]).read_text() if "path" in patch else patch["patch"])
    if not isinstance(operations, list):
        raise UnsupportedKustomization(f"patch {patch.get('path', '(inline)')} is not a JSON 6902 operation list")
    return jsonpatch.apply_patch(copy.deepcopy(resource), operations)


def _set_image(resources: list[dict], image: dict) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise UnsupportedKustomization(f"images entry {image}: only name, newName and newTag are implemented")
    for resource in resources:
        for container in pod_containers(resource):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def kubectl_kustomize(directory: Path) -> list[dict] | None:
    """``kubectl kustomize directory``'s resources, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def by_kind_and_name(resources: list[dict]) -> dict[tuple[str, str], dict]:
    """Resources keyed by (kind, name); a duplicate key is an error, as in kustomize."""
    keyed: dict[tuple[str, str], dict] = {}
    for resource in resources:
        key = (resource["kind"], resource["metadata"]["name"])
        assert key not in keyed, f"{key} defined twice"
        keyed[key] = resource
    return keyed


def find(resources: list[dict], kind: str, name: str | None = None) -> dict:
    """The one resource of ``kind`` (and ``name``, when given)."""
    found = [r for r in resources if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(resource: dict, name: str) -> dict:
    """The pod template's container (or init container) called ``name``."""
    found = [c for c in pod_containers(resource) if c["name"] == name]
    assert len(found) == 1, f"{resource['metadata']['name']} has {len(found)} containers named {name}"
    return found[0]


def effective_environment(pod_container: dict, resources: list[dict]) -> dict[str, Any]:
    """The variables a container starts with: envFrom ConfigMaps, then env entries.

    ConfigMap references resolve to their values; a Secret reference becomes
    ``("secret", name, key)`` since its value lives outside these files.
    """
    environment: dict[str, Any] = {}
    for source in pod_container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unsupported envFrom {source}"
        environment.update(find(resources, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in pod_container.get("env", []):
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
            continue
        reference = entry["valueFrom"]
        if "configMapKeyRef" in reference:
            ref = reference["configMapKeyRef"]
            environment[entry["name"]] = find(resources, "ConfigMap", ref["name"])["data"][ref["key"]]
        else:
            ref = reference["secretKeyRef"]
            environment[entry["name"]] = ("secret", ref["name"], ref["key"])
    return environment


def quantity_bytes(quantity: str | int) -> int:
    """A Kubernetes memory quantity (8Gi, 512Mi, 1G, 1024) in bytes."""
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i|[kMG]|)", str(quantity)).groups()
    return int(float(number) * MEMORY_UNITS[unit])


def quantity_cpus(quantity: str | int) -> float:
    """A Kubernetes CPU quantity ("4", 500m) in CPUs."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)
