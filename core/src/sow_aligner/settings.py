"""The model's settings: config.pbtxt parameters, overridden by SOW_QWEN3_* variables.

config.pbtxt holds every default; this module knows each parameter's
environment override and checks the values.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sow_qwen3_contract.limits import MAX_AUDIO_SECONDS_CEILING

# parameter key in config.pbtxt -> its environment override
PARAMETERS: dict[str, str] = {
    "model_path": "SOW_QWEN3_MODEL_PATH",
    "device": "SOW_QWEN3_DEVICE",
    "dtype": "SOW_QWEN3_DTYPE",
    "max_audio_seconds": "SOW_QWEN3_MAX_AUDIO_SECONDS",
    "encoder_attention": "SOW_QWEN3_ENCODER_ATTENTION",
    "compile": "SOW_QWEN3_COMPILE",
    "attention_kernel": "SOW_QWEN3_ATTENTION_KERNEL",
    "torch_threads": "SOW_QWEN3_TORCH_THREADS",
    "vad_model": "SOW_QWEN3_VAD_MODEL",
    "realign_passes": "SOW_QWEN3_REALIGN_PASSES",
    "window_seconds": "SOW_QWEN3_WINDOW_SECONDS",
    "batching": "SOW_QWEN3_BATCHING",
    "batch_audio_seconds": "SOW_QWEN3_BATCH_AUDIO_SECONDS",
    "batch_tokens": "SOW_QWEN3_BATCH_TOKENS",
}
# a variable of an earlier release -> the one that replaced it (same values): setting the old one is an error
RENAMED: dict[str, str] = {"SOW_QWEN3_DECODER_ATTENTION": "SOW_QWEN3_ATTENTION_KERNEL"}
DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES = ("auto", "bfloat16", "float16", "float32")
ENCODER_ATTENTION = ("windowed", "full")
COMPILE = ("auto", "off")
ATTENTION_KERNEL = ("auto", "sdpa")
BATCHING = ("auto", "on", "off")
CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_REALIGN_PASSES = 10
MIN_WINDOW_SECONDS = 10.0


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
    compile: str  # "auto": the text decoder's layers compiled (torch.compile) on CPU in bfloat16; "off": never
    attention_kernel: str  # "auto": the AMX kernel (amx_attention) for the decoder's causal attention and the
    # encoder's windows on CPU in bfloat16 where the CPU has AMX; "sdpa": PyTorch's attention
    torch_threads: int  # 0 = from the instance's CPU share
    vad_model: str  # the Triton model asked for voiced segments; "" (set as "none") = no VAD
    realign_passes: int  # anchored re-alignment passes after the first; 0 = the single pass only
    window_seconds: float  # the longest audio aligned in one forward pass; longer audio goes in windows
    batching: str  # cross-request batching of one execute()'s requests: "auto" (on CUDA only), "on" or "off"
    batch_audio_seconds: float  # the most audio one batched forward pass holds
    batch_tokens: int  # the most padded tokens (batch x longest prompt) one batched forward pass holds

    def batches_on(self, device: str) -> bool:
        """Whether an instance on ``device`` runs its requests' forward passes in shared batches."""
        return self.batching == "on" or (self.batching == "auto" and device.startswith("cuda"))


def raw_values(parameters: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """Each parameter's text: the environment override if set (non-empty), else config.pbtxt's.

    Raises SettingsError when config.pbtxt lacks a parameter, or when a
    renamed variable (RENAMED) is set, naming the one that replaced it.
    """
    missing = sorted(set(PARAMETERS) - set(parameters))
    if missing:
        raise SettingsError(f"config.pbtxt lacks the parameters {', '.join(missing)}")
    for old, new in RENAMED.items():
        if env.get(old):
            raise SettingsError(f"{old} was renamed {new} (same values): set {new}={env[old].strip()} instead")
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

    def number(key: str, kind: Callable[[str], float], low: float, high: float = math.inf) -> float:
        try:
            value = kind(values[key])
        except ValueError:
            raise SettingsError(_bad(key, values[key], "an integer" if kind is int else "a number")) from None
        if not math.isfinite(value) or value < low:
            raise SettingsError(_bad(key, values[key], f"a number >= {low:g}"))
        if value > high:
            raise SettingsError(_bad(key, values[key], f"at most {high:g}"))
        return value

    return Settings(
        model_path=Path(values["model_path"]),
        device=choice("device", DEVICES, allow_empty=True),
        dtype=choice("dtype", DTYPES),
        max_audio_seconds=number("max_audio_seconds", float, 1.0, MAX_AUDIO_SECONDS_CEILING),
        encoder_attention=choice("encoder_attention", ENCODER_ATTENTION),
        compile=choice("compile", COMPILE),
        attention_kernel=choice("attention_kernel", ATTENTION_KERNEL),
        torch_threads=int(number("torch_threads", int, 0)),
        vad_model="" if values["vad_model"].lower() == "none" else values["vad_model"],
        realign_passes=int(number("realign_passes", int, 0, MAX_REALIGN_PASSES)),
        window_seconds=number("window_seconds", float, MIN_WINDOW_SECONDS),
        batching=choice("batching", BATCHING),
        batch_audio_seconds=number("batch_audio_seconds", float, 1.0),
        batch_tokens=int(number("batch_tokens", int, 1)),
    )


def _bad(key: str, value: str, expected: str) -> str:
    return f"setting {key} (env {PARAMETERS[key]}) is {value!r}; expected {expected}"


def check_window_limit(window_seconds: float, classify_num: int, segment_ms: float) -> None:
    """Refuse a ``window_seconds`` longer than one forward pass can time.

    The timestamp head places every time in one of ``classify_num`` classes of
    ``segment_ms`` milliseconds (5000 x 80 ms for Qwen3-ForcedAligner-0.6B),
    so no time past classify_num x segment_ms (400 s) can be expressed:
    longer audio in one pass would get silently wrong times. Audio longer
    than ``window_seconds`` (up to ``max_audio_seconds``) is aligned in
    windows. This is the one place that decides the ceiling. Raises
    SettingsError naming the setting, its variable, the ceiling and why.
    """
    ceiling = classify_num * segment_ms / 1000.0
    if window_seconds > ceiling:
        raise SettingsError(_bad(
            "window_seconds", f"{window_seconds:g}",
            f"at most {ceiling:g} s: the model's timestamp head has {classify_num} classes of {segment_ms:g} ms, "
            f"so one pass cannot place a time past {ceiling:g} s and longer audio would get wrong times",
        ))


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


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """This cgroup's memory limit in bytes, or None when there is none or it cannot be read.

    cgroup v2: ``memory.max`` ("max" = none); cgroup v1:
    ``memory/memory.limit_in_bytes`` (no limit reads as a huge number, which
    ``memory_limit`` caps at physical memory).
    """
    for name in ("memory.max", "memory/memory.limit_in_bytes"):
        text = (read_text(str(root / name)) or "").strip()
        if text:
            return int(text) if text.isdigit() else None
    return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """This cgroup's CPU quota in CPUs (quota / period), or None when there is none or it cannot be read.

    cgroup v2: ``cpu.max`` ("QUOTA PERIOD", QUOTA "max" = none); cgroup v1:
    ``cpu/cpu.cfs_quota_us`` (-1 = none) over ``cpu/cpu.cfs_period_us``.
    """
    v2 = read_text(str(root / "cpu.max"))
    if v2:
        quota, _, period = v2.strip().partition(" ")
    else:
        quota = (read_text(str(root / "cpu" / "cpu.cfs_quota_us")) or "").strip()
        period = (read_text(str(root / "cpu" / "cpu.cfs_period_us")) or "").strip()
    if quota.isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
        return int(quota) / int(period)
    return None


def memory_limit(cgroup_limit: int | None, physical_bytes: int) -> int:
    """Bytes this process may use: the cgroup limit if any and below physical memory, else physical memory."""
    return physical_bytes if cgroup_limit is None else min(cgroup_limit, physical_bytes)


def cpu_share(cpu_limit: float | None, usable_cpus: int, instance_count: int) -> int:
    """Torch threads for one of ``instance_count`` instances on this machine.

    The CPUs are the usable ones (affinity), capped by the cgroup quota
    ``cpu_limit`` (in CPUs, None = none), shared evenly between instances,
    at least one each.
    """
    cpus = float(usable_cpus) if cpu_limit is None else min(float(usable_cpus), cpu_limit)
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
    return cpu_share(cgroup_cpu_limit(), len(os.sched_getaffinity(0)), instance_count)
