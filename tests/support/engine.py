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


def assert_timed_alike(mine, theirs) -> None:
    """``mine`` has the unit times (the timestamp classes) of ``theirs``, an informative answer (its times vary),
    and its confidences within CONFIDENCE_TOLERANCE."""
    assert len(set(theirs.unit_start) | set(theirs.unit_end)) >= 5  # informative: the times vary
    assert (mine.unit_start, mine.unit_end) == (theirs.unit_start, theirs.unit_end)
    assert mine.evidence.unit_confidence == pytest.approx(theirs.evidence.unit_confidence, abs=CONFIDENCE_TOLERANCE)
