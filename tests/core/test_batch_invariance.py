"""Batch invariance of the engine's batched forward passes (``AlignmentEngine.align_many``), in-process on CPU in
float32 with the tiny informative checkpoint: each call's timestamp classes are exactly those it gets alone,
whatever it is batched with; its confidences agree within CONFIDENCE_TOLERANCE (support.batch_invariance says
why there is one); a bad call gets its own error.
"""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from sow_aligner.batching import BatchBudget
from sow_aligner.engine import AlignmentEngine
from sow_aligner.errors import InvalidRequest
from support.audio import noise, speech
from support.batch_invariance import CONFIDENCE_TOLERANCE
from support.engine import cpu_engine

ZH = ["奇异恩典 何等甘甜", "我罪已得赦免", "前我失丧 今被寻回", "瞎眼今得看见"]
EN = ["Amazing grace how sweet the sound", "That saved a wretch like me"]
CALLS = {
    "zh-3s": (speech(3.0), ZH[:1], "Chinese"),
    "zh-20s": (speech(20.0), ZH, "Chinese"),  # three of the encoder's 8 s windows
    "zh-8.5s-repeated": (speech(8.5), ZH[:2] * 3, "Chinese"),
    "nothing-alignable": (speech(5.0), ["!!! ..."], "Chinese"),
    "en-12s": (speech(12.0), EN, "English"),
    "noise-6s": (noise(6.0, seed=3), ZH[2:], "Chinese"),
}
MIXES = {
    "all": list(CALLS),
    "reversed": list(reversed(CALLS)),
    "the same clip twice": ["zh-20s", "en-12s", "zh-20s"],
    "short with long": ["zh-3s", "zh-20s"],
}
UNLIMITED = BatchBudget(audio_seconds=10_000, tokens=10_000_000)


def spans(engine: AlignmentEngine, names: list[str]) -> list:
    """The named calls as ``align_many`` takes them: each the whole clip of a song of its own."""
    return [engine.clip_span(*CALLS[name]) for name in names]


@pytest.fixture(scope="module", params=["windowed", "full"])
def engine(request, tiny_model_dir) -> AlignmentEngine:
    torch.set_num_threads(2)
    return cpu_engine(tiny_model_dir, "float32", encoder_attention=request.param)


@pytest.fixture(scope="module")
def alone(engine) -> dict:
    """Each call aligned on its own (``align``): its Alignment, or the InvalidRequest it raises."""
    answers = {}
    for name, call in CALLS.items():
        try:
            answers[name] = engine.align(*call)
        except InvalidRequest as error:
            answers[name] = error
    return answers


def assert_as_alone(name: str, batched, single) -> None:
    if isinstance(single, Exception):
        assert type(batched) is type(single) and str(batched) == str(single), name
        return
    assert (batched.unit_start, batched.unit_end) == (single.unit_start, single.unit_end), name
    assert (batched.lines.starts, batched.lines.ends) == (single.lines.starts, single.lines.ends), name
    assert batched.evidence.unit_repaired == single.evidence.unit_repaired, name
    assert batched.evidence.unit_confidence == pytest.approx(single.evidence.unit_confidence,
                                                             abs=CONFIDENCE_TOLERANCE), name


def test_the_alone_answers_are_informative(alone):
    """Guards against a trivial pass: the calls' times vary and the bad call is refused alone too."""
    assert isinstance(alone["nothing-alignable"], InvalidRequest)
    for name in ("zh-20s", "zh-8.5s-repeated"):  # the tiny checkpoint is calibrated on Chinese
        # Start and end times together: how many distinct ones a random checkpoint gives moves with the CPU's
        # float32 kernels (an Intel Xeon with AMX gave zh-20s 4 distinct starts under full attention, 6 times).
        times = set(alone[name].unit_start) | set(alone[name].unit_end)
        assert len(times) >= 5, (name, sorted(times))


@pytest.mark.parametrize("mix", sorted(MIXES))
def test_a_batch_gives_each_call_what_it_gets_alone(engine, alone, mix):
    names = MIXES[mix]
    answers = engine.align_many(spans(engine, names), UNLIMITED)
    assert len(answers) == len(names)
    for name, answer in zip(names, answers):
        assert_as_alone(name, answer, alone[name])


@pytest.mark.parametrize("budget", [BatchBudget(25, 10_000_000), BatchBudget(10_000, 800), BatchBudget(1, 1)])
def test_a_budget_splits_the_batch_and_changes_no_answer(engine, alone, budget):
    names = MIXES["all"]
    answers = engine.align_many(spans(engine, names), budget)
    for name, answer in zip(names, answers):
        assert_as_alone(name, answer, alone[name])


def test_a_batch_that_runs_out_of_memory_is_split_and_still_answers_everyone(engine, alone, monkeypatch):
    """The CPU does not run out of memory on these sizes, so the forward pass is wrapped to raise
    torch.OutOfMemoryError, as CUDA does, for any batch of more than two calls."""
    forward = engine._forward
    sizes: list[int] = []

    def limited(batch):
        sizes.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (a stand-in)")
        return forward(batch)

    monkeypatch.setattr(engine, "_forward", limited)
    names = MIXES["all"]
    answers = engine.align_many(spans(engine, names), UNLIMITED)
    for name, answer in zip(names, answers):
        assert_as_alone(name, answer, alone[name])
    assert sizes == [5, 2, 3, 1, 2]  # five alignable calls, then halves until they fit


def test_one_call_runs_exactly_as_align(engine, alone):
    (answer,) = engine.align_many(spans(engine, ["zh-20s"]), UNLIMITED)
    assert replace(answer) == alone["zh-20s"]


def test_a_call_that_breaks_the_forward_pass_fails_alone(engine, alone, monkeypatch):
    """A stand-in fault: the forward pass raises for any batch holding the 3 s clip, as a service failure
    would; that call gets the error, its neighbours their own answers."""
    forward = engine._forward

    def faulty(batch):
        if any(abs(prepared.duration - 3.0) < 1e-9 for prepared in batch):
            raise RuntimeError("a kernel failed (a stand-in)")
        return forward(batch)

    monkeypatch.setattr(engine, "_forward", faulty)
    names = MIXES["all"]
    answers = engine.align_many(spans(engine, names), UNLIMITED)
    for name, answer in zip(names, answers):
        if name == "zh-3s":
            assert isinstance(answer, RuntimeError) and "a kernel failed" in str(answer)
        else:
            assert_as_alone(name, answer, alone[name])
