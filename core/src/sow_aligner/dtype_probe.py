"""Choosing the CPU dtype by measurement (``dtype=auto`` on CPU).

No fixed rule picks the faster dtype on every CPU: bfloat16 was 2.4x faster
than float32 on an AMD EPYC with avx512_bf16, 1.5x slower on an Intel Xeon
with avx512_bf16 but no AMX, and about 8x slower on an AVX2-only EPYC
(docs/benchmarks.md). So at load, before the weights are read, the model's
own heaviest operations are timed in every candidate dtype whose estimated
peak memory fits this instance's share of the memory limit, and the fastest
wins.

The probe: for ``PROBE_ROWS`` tokens, the text decoder's MLP projections
(hidden -> intermediate -> hidden), the audio encoder's first feed-forward
projection (d_model -> ffn) and the decoder's causal attention (its heads
and head size), at the shapes the checkpoint's config.json gives. One pass
is all four; each dtype gets one warm-up pass, then timed passes until
``PROBE_PASSES`` are done or its share of ``PROBE_SECONDS`` is spent (at
least one). Its figure is the pass's FLOPs over the best pass time, in
GFLOP/s. With the real model, one pass is 2.8 GFLOP: about 20 ms in float32
on 2 idle cores and 1 s in emulated bfloat16 on a busy AVX2 machine.

Everything but ``measure_gflops`` is pure and unit-tested with the timing
injected.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

# CPU candidates. float16 is left out: CPUs have no faster path for it than
# for bfloat16, and its range overflows where bfloat16's does not.
CANDIDATES = ("float32", "bfloat16")
ELEMENT_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
# Peak-memory model of one serving instance (the Python backend stub), fitted
# to the measured stub peaks (docs/benchmarks.md, 300 s song): bfloat16 3.09 GB
# (runtime + weights + activations), float32 6.21 GB (set while loading: the
# bfloat16 file's pages plus the float32 copy).
RUNTIME_BYTES = 800_000_000  # Python, torch, qwen-asr, tokenizer
ACTIVATION_ELEMENTS_PER_AUDIO_SECOND = 1_000_000
MEMORY_HEADROOM = 0.9  # share of an instance's memory the estimate may use
# Figures within this fraction of the best are a tie, won by the candidate
# listed first (the checkpoint's own dtype: no conversion, least memory).
TIE_FRACTION = 0.05
PROBE_ROWS = 128
PROBE_PASSES = 5
PROBE_SECONDS = 4.0


@dataclass(frozen=True)
class ProbeShapes:
    """The model dimensions the probe's operations use (from config.json)."""

    hidden: int
    intermediate: int
    encoder_width: int
    encoder_ffn: int
    heads: int
    head_dim: int

    @classmethod
    def from_config(cls, config: Mapping) -> ProbeShapes:
        """From a Qwen3-ASR checkpoint's config.json; KeyError when a dimension is missing."""
        thinker = config["thinker_config"]
        text, audio = thinker["text_config"], thinker["audio_config"]
        return cls(
            hidden=int(text["hidden_size"]),
            intermediate=int(text["intermediate_size"]),
            encoder_width=int(audio["d_model"]),
            encoder_ffn=int(audio["encoder_ffn_dim"]),
            heads=int(text["num_attention_heads"]),
            head_dim=int(text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]),
        )

    def pass_flops(self, rows: int = PROBE_ROWS) -> int:
        """FLOPs of one probe pass over ``rows`` tokens (a multiply-add is 2)."""
        linear = 2 * rows * (2 * self.hidden * self.intermediate + self.encoder_width * self.encoder_ffn)
        causal_pairs = rows * (rows + 1) // 2
        attention = 2 * 2 * causal_pairs * self.heads * self.head_dim  # scores and weighted sum
        return linear + attention


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype an instance runs in, and why."""

    dtype: str
    reason: str  # "setting", "device", "probe", "only one fits", "none fits"
    gflops: dict[str, float] = field(default_factory=dict)  # probe figure per measured candidate
    peak_bytes: dict[str, int] = field(default_factory=dict)  # estimate per candidate
    budget_bytes: int = 0

    def describe(self) -> str:
        """One log line: the choice, the probe's figures and the memory estimates."""
        parts = [f"dtype {self.dtype} ({self.reason})"]
        if self.gflops:
            parts.append("probe " + ", ".join(f"{d} {g:.1f} GFLOP/s" for d, g in self.gflops.items()))
        if self.peak_bytes:
            parts.append(
                "estimated peak " + ", ".join(f"{d} {b / 1e9:.1f} GB" for d, b in self.peak_bytes.items())
                + f" of {self.budget_bytes / 1e9:.1f} GB allowed"
            )
        return "; ".join(parts)


def estimated_peak_bytes(dtype: str, parameters: int, checkpoint_dtype: str, max_audio_seconds: float) -> int:
    """Peak resident bytes of one instance serving songs up to ``max_audio_seconds`` in ``dtype``.

    Loading holds the checkpoint's pages beside a converted copy when the
    dtypes differ; serving holds the weights plus activations that grow
    with the audio. The peak is the larger of the two, plus the runtime.
    """
    weights = parameters * ELEMENT_BYTES[dtype]
    loading = weights + (parameters * ELEMENT_BYTES.get(checkpoint_dtype, 4) if dtype != checkpoint_dtype else 0)
    serving = weights + int(max_audio_seconds * ACTIVATION_ELEMENTS_PER_AUDIO_SECOND * ELEMENT_BYTES[dtype])
    return RUNTIME_BYTES + max(loading, serving)


def candidate_order(checkpoint_dtype: str) -> list[str]:
    """CANDIDATES with the checkpoint's own dtype first, then by element size (smallest first)."""
    rest = sorted((d for d in CANDIDATES if d != checkpoint_dtype), key=lambda d: ELEMENT_BYTES[d])
    return ([checkpoint_dtype] if checkpoint_dtype in CANDIDATES else []) + rest


def fastest(gflops: Mapping[str, float], order: Sequence[str]) -> str:
    """The candidate with the highest figure; within TIE_FRACTION of it, the first in ``order``."""
    best = max(gflops.values())
    return next(d for d in order if d in gflops and gflops[d] >= best * (1 - TIE_FRACTION))


def choose_cpu_dtype(
    shapes: ProbeShapes,
    parameters: int,
    checkpoint_dtype: str,
    max_audio_seconds: float,
    memory_budget_bytes: int,
    measure: Callable[[str, ProbeShapes, float], float],
) -> DtypeChoice:
    """The dtype for ``dtype=auto`` on CPU.

    Candidates whose ``estimated_peak_bytes`` exceeds MEMORY_HEADROOM of
    ``memory_budget_bytes`` (this instance's share of the memory limit) are
    not measured. ``measure(dtype, shapes, seconds)`` returns GFLOP/s within
    about ``seconds``; the fastest fitting candidate wins (ties: see
    ``fastest``). When one fits it is taken unmeasured; when none fits, the
    smallest is taken (loading may then fail for lack of memory).
    """
    order = candidate_order(checkpoint_dtype)
    peaks = {d: estimated_peak_bytes(d, parameters, checkpoint_dtype, max_audio_seconds) for d in order}
    fits = [d for d in order if peaks[d] <= memory_budget_bytes * MEMORY_HEADROOM]
    common = {"peak_bytes": peaks, "budget_bytes": memory_budget_bytes}
    if not fits:
        return DtypeChoice(min(order, key=lambda d: (peaks[d], order.index(d))), "none fits", **common)
    if len(fits) == 1:
        return DtypeChoice(fits[0], "only one fits", **common)
    share = PROBE_SECONDS / len(fits)
    gflops = {d: measure(d, shapes, share) for d in fits}
    return DtypeChoice(fastest(gflops, order), "probe", gflops=gflops, **common)


def measure_gflops(dtype: str, shapes: ProbeShapes, seconds: float, rows: int = PROBE_ROWS) -> float:
    """GFLOP/s of the probe pass in ``dtype`` on this CPU: FLOPs over the best of up to PROBE_PASSES timed passes.

    One warm-up pass first (it creates the kernels' primitives); after the
    first timed pass, another follows only while it would end within
    ``seconds`` of the start (warm-up included).
    """
    import torch

    kind = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * 0.05).to(kind)

    tokens, audio = tensor(rows, shapes.hidden), tensor(rows, shapes.encoder_width)
    up, down = tensor(shapes.intermediate, shapes.hidden), tensor(shapes.hidden, shapes.intermediate)
    ffn = tensor(shapes.encoder_ffn, shapes.encoder_width)
    query, key, value = (tensor(1, shapes.heads, rows, shapes.head_dim) for _ in range(3))

    def one_pass() -> None:
        torch.nn.functional.linear(torch.nn.functional.linear(tokens, up), down)
        torch.nn.functional.linear(audio, ffn)
        torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True)

    started = time.perf_counter()
    with torch.inference_mode():
        one_pass()
        best = float("inf")
        for _ in range(PROBE_PASSES):
            begun = time.perf_counter()
            one_pass()
            now = time.perf_counter()
            best = min(best, now - begun)
            if now - started + (now - begun) > seconds:  # another pass would overrun
                break
    return shapes.pass_flops(rows) / best / 1e9
