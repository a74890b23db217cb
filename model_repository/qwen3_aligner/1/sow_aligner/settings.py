"""The model's settings: config.pbtxt parameters, overridden by SOW_QWEN3_* variables.

config.pbtxt holds every default; this module knows each parameter's
environment override and checks the values.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

# parameter key in config.pbtxt -> its environment override
PARAMETERS: dict[str, str] = {
    "model_path": "SOW_QWEN3_MODEL_PATH",
    "device": "SOW_QWEN3_DEVICE",
    "dtype": "SOW_QWEN3_DTYPE",
    "max_audio_seconds": "SOW_QWEN3_MAX_AUDIO_SECONDS",
    "encoder_attention": "SOW_QWEN3_ENCODER_ATTENTION",
    "torch_threads": "SOW_QWEN3_TORCH_THREADS",
}
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")
ENCODER_ATTENTION = ("windowed", "full")


class SettingsError(ValueError):
    """A setting has a value the model cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one model instance (before device probing)."""

    model_path: Path
    device: str  # "", "auto", "cuda", "mps" or "cpu" ("" = from the instance kind)
    dtype: str
    max_audio_seconds: float
    encoder_attention: str
    torch_threads: int  # 0 = from the instance's CPU share


def raw_values(parameters: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """Each parameter's text: the environment override if set (non-empty), else config.pbtxt's.

    Raises SettingsError when config.pbtxt lacks a parameter.
    """
    missing = sorted(set(PARAMETERS) - set(parameters))
    if missing:
        raise SettingsError(f"config.pbtxt lacks the parameters {', '.join(missing)}")
    return {key: (env.get(variable) or parameters[key]).strip() for key, variable in PARAMETERS.items()}


def resolve(parameters: Mapping[str, str], env: Mapping[str, str]) -> Settings:
    """Validated Settings from config.pbtxt ``parameters`` and ``env``.

    Raises SettingsError naming the parameter, its variable and the bad value.
    """
    values = raw_values(parameters, env)

    def choice(key: str, allowed: tuple[str, ...], allow_empty: bool = False) -> str:
        value = values[key].lower()
        if (allow_empty and not value) or value in allowed:
            return value
        raise SettingsError(_bad(key, values[key], "one of " + ", ".join(allowed)))

    def number(key: str, kind: Callable[[str], float], low: float) -> float:
        try:
            value = kind(values[key])
        except ValueError:
            raise SettingsError(_bad(key, values[key], "a number")) from None
        if not math.isfinite(value) or value < low:
            raise SettingsError(_bad(key, values[key], f"a number >= {low:g}"))
        return value

    return Settings(
        model_path=Path(values["model_path"]),
        device=choice("device", DEVICES, allow_empty=True),
        dtype=choice("dtype", DTYPES),
        max_audio_seconds=number("max_audio_seconds", float, 1.0),
        encoder_attention=choice("encoder_attention", ENCODER_ATTENTION),
        torch_threads=int(number("torch_threads", int, 0)),
    )


def _bad(key: str, value: str, expected: str) -> str:
    return f"setting {key} (env {PARAMETERS[key]}) is {value!r}; expected {expected}"


def resolve_device(
    requested: str,
    instance_kind: str,
    device_id: int,
    cuda_available: bool,
    mps_available: bool,
) -> str:
    """The torch device string for one instance.

    ``requested`` (SOW_QWEN3_DEVICE) wins when set: "auto" means CUDA, then
    MPS, then CPU. When it is empty, Triton's instance kind decides: GPU ->
    ``cuda:<device_id>``, CPU -> ``cpu``, anything else -> as "auto".
    Asking for a device that is not there raises SettingsError.
    """
    cuda = f"cuda:{device_id if instance_kind.upper() == 'GPU' else 0}"
    if not requested:
        requested = {"GPU": "cuda", "CPU": "cpu"}.get(instance_kind.upper(), "auto")
    if requested == "auto":
        return cuda if cuda_available else "mps" if mps_available else "cpu"
    if requested == "cuda" and not cuda_available:
        raise SettingsError("device cuda was asked for (SOW_QWEN3_DEVICE or a GPU instance) but CUDA is not available")
    if requested == "mps" and not mps_available:
        raise SettingsError("device mps was asked for (SOW_QWEN3_DEVICE) but MPS is not available")
    return cuda if requested == "cuda" else requested


def resolve_dtype(requested: str, device: str) -> str | None:
    """The torch dtype name to run in, or None when it is to be measured.

    An explicit choice wins. "auto" means bfloat16 on CUDA, float32 on MPS,
    and on CPU None: the engine times the candidates at load
    (``sow_aligner.dtype_probe``), since no CPU-flag rule picks the faster one.
    """
    if requested != "auto":
        return requested
    if device.startswith("cuda"):
        return "bfloat16"
    if device == "mps":
        return "float32"
    return None


def memory_limit(cgroup_memory_max: str | None, physical_bytes: int) -> int:
    """Bytes this process may use: the cgroup v2 ``memory.max`` limit if any, else physical memory."""
    text = (cgroup_memory_max or "").strip()
    if text.isdigit():
        return min(int(text), physical_bytes)
    return physical_bytes


def cpu_share(cgroup_cpu_max: str | None, usable_cpus: int, instance_count: int) -> int:
    """Torch threads for one of ``instance_count`` instances on this machine.

    The CPUs are the usable ones (affinity), capped by a cgroup v2 quota
    (``cpu.max`` text such as "400000 100000"; "max ..." means none), shared
    evenly between instances, at least one each.
    """
    cpus = float(usable_cpus)
    if cgroup_cpu_max:
        quota, _, period = cgroup_cpu_max.strip().partition(" ")
        if quota != "max" and period:
            cpus = min(cpus, int(quota) / int(period))
    return max(1, int(cpus // max(1, instance_count)))


def read_text(path: str) -> str | None:
    """A small system file's text, or None when it cannot be read."""
    try:
        return Path(path).read_text()
    except OSError:
        return None


def torch_threads_for(settings: Settings, instance_count: int) -> int:
    """The thread count to give torch: the setting, else this instance's CPU share."""
    if settings.torch_threads:
        return settings.torch_threads
    return cpu_share(read_text("/sys/fs/cgroup/cpu.max"), len(os.sched_getaffinity(0)), instance_count)
