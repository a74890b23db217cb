"""The aligner engine as a model instance loads it, in-process on CPU, and the comparison of two engines' answers
that the kernel tests (channels-last, the compiled decoder, slices of a song's encoding) hold."""
from __future__ import annotations

import pytest

from sow_aligner import settings as sow_settings
from sow_aligner.engine import AlignmentEngine
from sow_qwen3_server import launcher
from support.audio import REPO
from support.batch_invariance import CONFIDENCE_TOLERANCE


def cpu_engine(model_dir, dtype: str, **changes: str) -> AlignmentEngine:
    """The engine on ``model_dir`` with config.pbtxt's settings, on CPU in ``dtype``, with ``changes`` to them."""
    parameters = {**launcher.config_parameters(REPO / "model_repository"), "model_path": str(model_dir),
                  "dtype": dtype, "device": "cpu", **changes}
    return AlignmentEngine.load(sow_settings.resolve(parameters, {}))


def with_qwen_asrs_front_end(engine: AlignmentEngine) -> AlignmentEngine:
    """``engine`` with qwen-asr's convolution front end (convolution, then GELU) instead of the fused one
    (``conv_front_end``), for tests that compare two other paths class for class on the tiny informative
    checkpoint: its neighbouring classes tie within bfloat16's rounding, so two paths that are not bit-identical
    keep every class only on some activations (the fused front end's own test: test_conv_front_end)."""
    tower = engine.aligner.model.thinker.audio_tower
    if "forward" in vars(tower):
        del tower.forward
    return engine


def assert_timed_alike(mine, theirs) -> None:
    """``mine`` has the unit times (the timestamp classes) of ``theirs``, an informative answer (its times vary),
    and its confidences within CONFIDENCE_TOLERANCE."""
    assert len(set(theirs.unit_start) | set(theirs.unit_end)) >= 5  # informative: the times vary
    assert (mine.unit_start, mine.unit_end) == (theirs.unit_start, theirs.unit_end)
    assert mine.evidence.unit_confidence == pytest.approx(theirs.evidence.unit_confidence, abs=CONFIDENCE_TOLERANCE)
