"""dtype=auto on CPU: the memory rule, the tie rule and the probe itself (sow_aligner.dtype_probe)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from sow_aligner import dtype_probe
from sow_aligner.dtype_probe import (
    PROBE_SECONDS,
    ProbeShapes,
    choose_cpu_dtype,
    estimated_peak_bytes,
    fastest,
    measure_gflops,
)
from sow_qwen3_contract.checkpoint import checkpoint_parameters

GB = 10**9
REAL_PARAMETERS = 917_728_896  # the real Qwen3-ForcedAligner-0.6B checkpoint
REAL_SHAPES = ProbeShapes(hidden=1024, intermediate=3072, encoder_width=1024, encoder_ffn=4096, heads=16, head_dim=128)
TINY_SHAPES = ProbeShapes(hidden=64, intermediate=128, encoder_width=64, encoder_ffn=128, heads=4, head_dim=16)


class Recorder:
    """A ``measure`` stand-in: returns set figures and records each call."""

    def __init__(self, figures: dict[str, float]) -> None:
        self.figures, self.calls = figures, []

    def __call__(self, dtype: str, shapes: ProbeShapes, seconds: float) -> float:
        self.calls.append((dtype, shapes, seconds))
        return self.figures[dtype]


def test_peak_estimate_matches_the_measured_stub_peaks():
    """docs/benchmarks.md, 300 s song: stub peak 3.09 GB in bfloat16, 6.21 GB in float32 (from the bf16 file)."""
    assert estimated_peak_bytes("bfloat16", REAL_PARAMETERS, "bfloat16", 300) == pytest.approx(3.09 * GB, rel=0.1)
    assert estimated_peak_bytes("float32", REAL_PARAMETERS, "bfloat16", 300) == pytest.approx(6.21 * GB, rel=0.1)
    # No conversion copy when the checkpoint is already float32; longer audio needs more.
    assert estimated_peak_bytes("float32", REAL_PARAMETERS, "float32", 300) < estimated_peak_bytes(
        "float32", REAL_PARAMETERS, "bfloat16", 300)
    assert estimated_peak_bytes("bfloat16", REAL_PARAMETERS, "bfloat16", 600) > estimated_peak_bytes(
        "bfloat16", REAL_PARAMETERS, "bfloat16", 300)


def test_both_fit_in_an_8_gib_container_and_the_faster_wins():
    measure = Recorder({"float32": 160.0, "bfloat16": 95.0})
    choice = choose_cpu_dtype(REAL_SHAPES, REAL_PARAMETERS, "bfloat16", 300, 8 * 1024**3, measure)
    assert (choice.dtype, choice.reason) == ("float32", "probe")
    assert choice.gflops == {"bfloat16": 95.0, "float32": 160.0}
    assert [(d, s, t) for d, s, t in measure.calls] == [
        ("bfloat16", REAL_SHAPES, PROBE_SECONDS / 2), ("float32", REAL_SHAPES, PROBE_SECONDS / 2)]


def test_a_dtype_that_does_not_fit_is_never_measured():
    measure = Recorder({"float32": 500.0, "bfloat16": 50.0})
    choice = choose_cpu_dtype(REAL_SHAPES, REAL_PARAMETERS, "bfloat16", 300, 6 * 1024**3, measure)
    assert (choice.dtype, choice.reason, choice.gflops, measure.calls) == ("bfloat16", "only one fits", {}, [])
    assert choice.peak_bytes["float32"] > 0.9 * 6 * 1024**3 >= choice.peak_bytes["bfloat16"]


@pytest.mark.parametrize("checkpoint,expected", [
    ("bfloat16", "bfloat16"),
    ("float32", "float32"),  # converting would hold the float32 file's pages as well
])
def test_when_nothing_fits_the_smallest_estimate_is_taken_unmeasured(checkpoint, expected):
    measure = Recorder({"float32": 500.0, "bfloat16": 50.0})
    choice = choose_cpu_dtype(REAL_SHAPES, REAL_PARAMETERS, checkpoint, 300, 2 * 1024**3, measure)
    assert (choice.dtype, choice.reason, measure.calls) == (expected, "none fits", [])


@pytest.mark.parametrize("figures,checkpoint,expected", [
    ({"float32": 110.0, "bfloat16": 100.0}, "bfloat16", "float32"),   # clearly faster
    ({"float32": 104.0, "bfloat16": 100.0}, "bfloat16", "bfloat16"),  # a tie: the checkpoint's dtype
    ({"float32": 100.0, "bfloat16": 104.0}, "float32", "float32"),    # a tie the other way round
    ({"float32": 100.0, "bfloat16": 240.0}, "float32", "bfloat16"),
    ({"float32": 100.0, "bfloat16": 104.0}, "float16", "bfloat16"),   # unknown checkpoint dtype: smaller first
])
def test_the_fastest_wins_and_ties_go_to_the_checkpoint_dtype(figures, checkpoint, expected):
    assert fastest(figures, dtype_probe.candidate_order(checkpoint)) == expected
    choice = choose_cpu_dtype(REAL_SHAPES, REAL_PARAMETERS, checkpoint, 300, 64 * 1024**3, Recorder(figures))
    assert (choice.dtype, choice.reason) == (expected, "probe")


def test_pass_flops_counts_what_the_pass_runs():
    from torch.utils.flop_counter import FlopCounterMode

    shapes, rows = TINY_SHAPES, 32
    linear_flops = 2 * rows * (2 * 64 * 128 + 64 * 128)
    attention_flops = 4 * (rows * (rows + 1) // 2) * 4 * 16  # causal half of scores and weighted sum
    assert shapes.pass_flops(rows) == linear_flops + attention_flops
    x, up, down = torch.randn(rows, 64), torch.randn(128, 64), torch.randn(64, 128)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.linear(torch.nn.functional.linear(x, up), down)
        torch.nn.functional.linear(x, torch.randn(128, 64))
    assert counter.get_total_flops() == linear_flops


def test_shapes_come_from_the_checkpoint_config(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert ProbeShapes.from_config(config) == TINY_SHAPES


def test_parameter_count_from_safetensors_headers(tiny_model_dir, tmp_path):
    weights = load_file(tiny_model_dir / "model.safetensors")
    expected = sum(t.numel() for t in weights.values())
    assert checkpoint_parameters(tiny_model_dir) == expected
    # A sharded checkpoint: two files and an index.
    names = sorted(weights)
    halves = {"a.safetensors": names[: len(names) // 2], "b.safetensors": names[len(names) // 2:]}
    for file, keys in halves.items():
        save_file({k: weights[k].contiguous() for k in keys}, tmp_path / file)
    index = {"weight_map": {k: file for file, keys in halves.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert checkpoint_parameters(tmp_path) == expected


def test_the_real_probe_measures_every_fitting_candidate_and_picks_the_fastest():
    choice = choose_cpu_dtype(TINY_SHAPES, 1_000_000, "bfloat16", 300, 64 * 1024**3, measure_gflops)
    assert choice.reason == "probe" and set(choice.gflops) == {"float32", "bfloat16"}
    assert all(math.isfinite(g) and g > 0 for g in choice.gflops.values()), choice.gflops
    assert choice.dtype == fastest(choice.gflops, ["bfloat16", "float32"])
    assert choice.dtype in choice.describe() and "GFLOP/s" in choice.describe()


def counted_passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the probe's passes: each runs scaled_dot_product_attention once (wrapped here, then called)."""
    calls: list[int] = []
    attention = torch.nn.functional.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(1)
        return attention(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting)
    return calls


class TickingClock:
    """A ``time`` stand-in whose perf_counter advances one second per reading: every pass takes 1 s."""

    def __init__(self) -> None:
        self.now = -1.0

    def perf_counter(self) -> float:
        self.now += 1.0
        return self.now


def test_the_real_probe_at_real_shapes_keeps_to_one_pass_when_out_of_time(monkeypatch):
    """seconds=0: a warm-up and one timed pass per dtype, whatever the machine's speed."""
    passes = counted_passes(monkeypatch)
    gflops = measure_gflops("float32", REAL_SHAPES, 0.0)
    assert len(passes) == 2, f"{len(passes)} passes: the warm-up and one timed pass expected"
    assert math.isfinite(gflops) and gflops > 0


@pytest.mark.parametrize("seconds, timed", [
    (0.0, 1),   # out of time at once: one timed pass
    (2.9, 1),   # after the warm-up (1 s) and pass 1 (1 s) another would end at 3 s
    (3.0, 2),   # ... which fits
    (6.0, 3),
    (100.0, dtype_probe.PROBE_PASSES),  # time to spare: never more than PROBE_PASSES
])
def test_the_probe_times_another_pass_only_while_it_would_end_in_time(monkeypatch, seconds, timed):
    passes = counted_passes(monkeypatch)
    monkeypatch.setattr(dtype_probe, "time", TickingClock())
    gflops = measure_gflops("float32", TINY_SHAPES, seconds, rows=8)
    assert len(passes) == 1 + timed
    assert gflops == pytest.approx(TINY_SHAPES.pass_flops(8) / 1.0 / 1e9)  # the best pass took 1 s


def engine_settings(model_dir, dtype: str):
    from sow_aligner import settings
    from sow_qwen3_server import launcher
    from support.audio import REPO

    parameters = launcher.config_parameters(REPO / "model_repository")
    return settings.resolve({**parameters, "model_path": str(model_dir), "device": "cpu", "dtype": dtype}, {})


@pytest.mark.parametrize("dtype,device,expected", [
    ("bfloat16", "cpu", ("bfloat16", "setting")),
    ("float32", "cuda:0", ("float32", "setting")),
    ("auto", "cuda:0", ("bfloat16", "device")),
    ("auto", "mps", ("float32", "device")),
])
def test_engine_measures_only_for_auto_on_cpu(tiny_model_dir, dtype, device, expected):
    from sow_aligner.engine import choose_dtype

    choice = choose_dtype(engine_settings(tiny_model_dir, dtype), device, tiny_model_dir, 24 * 1024**3)
    assert (choice.dtype, choice.reason, choice.gflops) == (*expected, {})


def test_engine_auto_on_cpu_probes_the_checkpoint(tiny_model_dir):
    from sow_aligner.engine import choose_dtype

    choice = choose_dtype(engine_settings(tiny_model_dir, "auto"), "cpu", tiny_model_dir, 24 * 1024**3)
    assert choice.reason == "probe" and set(choice.gflops) == {"float32", "bfloat16"}


def test_engine_names_an_unreadable_weights_header(tiny_model_dir, tmp_path):
    from sow_aligner.engine import ModelLoadError, choose_dtype
    from support.checkpoints import broken_copy

    def truncate(directory):
        (directory / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes()[:5000])

    broken = broken_copy(tiny_model_dir, tmp_path, truncate)
    with pytest.raises(ModelLoadError, match=f"could not load Qwen3-ForcedAligner from {broken}: unreadable weights header"):
        choose_dtype(engine_settings(broken, "auto"), "cpu", broken, 24 * 1024**3)
