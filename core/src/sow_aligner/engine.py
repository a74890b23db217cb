"""Loading Qwen3-ForcedAligner and aligning one request's lyric lines.

This is the only module of the package that needs torch and qwen-asr. It
runs the same computation as ``Qwen3ForcedAligner.align`` for one clip (same
prompt, same processor, same forward pass, same monotonic repair and
rounding; with the default windowed encoder attention, the forward pass is
stock's on CPU only for clips of one 8 s window, see encoder_windows), with
the per-request waste removed: the text is split into units
once, per line, so units map to lines without a second tokenisation, and the
forward pass keeps no KV cache, and the timestamp head runs only at the
timestamp tokens (``timestamp_head``).
"""
from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# Never reach a model hub at run time: the weights come from a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from qwen_asr import Qwen3ForcedAligner  # noqa: E402
from qwen_asr.inference.utils import float_range_normalize  # noqa: E402
from transformers import BatchFeature  # noqa: E402

from sow_qwen3_contract.checkpoint import checkpoint_parameters, checkpoint_problem  # noqa: E402
from sow_qwen3_contract.tensors import SAMPLE_RATE  # noqa: E402

from .access import permission_problem  # noqa: E402
from .alignment import Alignment, alignment_from_slots  # noqa: E402
from .batching import BatchBudget, budget_groups, run_splitting  # noqa: E402
from .dtype_probe import DtypeChoice, ProbeShapes, choose_cpu_dtype, measure_gflops  # noqa: E402
from .encoder_windows import enable_windowed_attention  # noqa: E402
from .errors import InvalidRequest  # noqa: E402
from .settings import Settings, cgroup_memory_limit, check_window_limit, memory_limit, resolve_device, resolve_dtype  # noqa: E402
from .timestamp_head import TimestampHead  # noqa: E402
from .timestamps import fix_timestamp  # noqa: E402

log = logging.getLogger(__name__)

AUDIO_PROMPT = "<|audio_start|><|audio_pad|><|audio_end|>"
TIMESTAMP_PAIR = "<timestamp><timestamp>"
# One-second chunks the audio encoder's convolution front end runs at once.
# qwen-asr's default (500) holds a 300 s song's whole CNN activation, the
# service's peak memory; 50 cuts the peak by about 1.6 GB at the same speed
# (docs/benchmarks.md).
CONV_CHUNKS = 50


def channels_last_convolutions(model: torch.nn.Module) -> None:
    """Store every 2-D convolution weight in ``model`` (the audio encoder's front end) channels-last.

    PyTorch then runs those convolutions in oneDNN's channels-last kernels
    (their output is channels-last too; the encoder's next step makes it
    contiguous). On CPU in bfloat16 that is the layout oneDNN computes in: on
    an Intel Xeon with AMX the front end ran 1.66x faster, bit-identical to the
    default layout; elsewhere it is within bfloat16's rounding, and
    tests/core/test_channels_last.py holds the timestamp classes to it.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.to(memory_format=torch.channels_last)


class ModelLoadError(RuntimeError):
    """The model directory is missing or broken; the message names the path and the problem."""


@dataclass(frozen=True)
class TimestampSlots:
    """The two timestamp slots of each unit (start, end interleaved) as the forward pass chose them."""

    raw_ms: list[int]  # the chosen class times, before the monotonic repair
    repaired_ms: list[int]  # after qwen-asr's monotonic repair
    confidence: list[float]  # softmax probability of the chosen class


def check_model_dir(path: Path) -> None:
    """Raise ModelLoadError unless ``path`` is a Qwen3-ForcedAligner checkpoint (``sow_qwen3_contract.checkpoint``)
    that this process can read."""
    problem = permission_problem(path) or checkpoint_problem(path)
    if problem:
        raise ModelLoadError(problem)


def checkpoint_dtype(path: Path) -> str:
    """The dtype the checkpoint's config.json records ("float32" when it records none)."""
    config = json.loads((path / "config.json").read_text())
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def choose_dtype(settings: Settings, device: str, path: Path, memory: int) -> DtypeChoice:
    """The dtype to load in: the setting, the device's default, or (``auto`` on CPU) the probe's pick.

    ``memory`` is this instance's share of the memory limit, in bytes.
    """
    resolved = resolve_dtype(settings.dtype, device)
    if resolved:
        return DtypeChoice(resolved, "setting" if settings.dtype != "auto" else "device")
    try:
        parameters = checkpoint_parameters(path)
    except (OSError, ValueError, KeyError, struct.error) as exc:
        raise ModelLoadError(f"could not load Qwen3-ForcedAligner from {path}: unreadable weights header: {exc!r}") from None
    shapes = ProbeShapes.from_config(json.loads((path / "config.json").read_text()))
    return choose_cpu_dtype(
        # One pass never sees more than one window of audio (longer songs go in windows).
        shapes, parameters, checkpoint_dtype(path), min(settings.max_audio_seconds, settings.window_seconds), memory,
        measure_gflops,
    )


class AlignmentEngine:
    """One loaded Qwen3-ForcedAligner and the per-request alignment path."""

    def __init__(self, aligner: Qwen3ForcedAligner, settings: Settings, dtype_choice: DtypeChoice) -> None:
        self.aligner = aligner
        self.settings = settings
        self.dtype_choice = dtype_choice
        thinker_config = aligner.model.config.thinker_config
        # Two timestamps per unit, each one of classify_num 80 ms steps: past
        # classify_num / 2 units the head cannot place them all.
        self.max_units = int(thinker_config.classify_num) // 2
        self.max_tokens = int(thinker_config.text_config.max_position_embeddings)

    @classmethod
    def load(
        cls, settings: Settings, instance_kind: str = "CPU", device_id: int = 0, instance_count: int = 1,
    ) -> AlignmentEngine:
        """Load the checkpoint at ``settings.model_path`` onto the resolved device.

        With ``dtype=auto`` on CPU the dtype is measured first (``choose_dtype``),
        with this instance's share (1 / ``instance_count``) of the memory limit.
        Raises ModelLoadError (path and problem in the message) when the
        directory is missing or broken, or SettingsError for a bad setting
        (including a ``window_seconds`` past what one pass can time).
        """
        path = settings.model_path
        check_model_dir(path)
        device = resolve_device(
            settings.device, instance_kind, device_id,
            cuda_available=torch.cuda.is_available(),
            mps_available=torch.backends.mps.is_available(),
        )
        memory = memory_limit(cgroup_memory_limit(), os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        choice = choose_dtype(settings, device, path, memory // max(1, instance_count))
        log.info("%s", choice.describe())
        dtype = choice.dtype
        try:
            aligner = Qwen3ForcedAligner.from_pretrained(
                str(path), dtype=getattr(torch, dtype), device_map=device, local_files_only=True
            )
        except Exception as exc:  # any failure here means the directory is unusable
            raise ModelLoadError(f"could not load Qwen3-ForcedAligner from {path}: {type(exc).__name__}: {exc}") from exc
        # check_model_dir saw the timestamp head's class count agree with config.json's.
        classify_num = aligner.model.config.thinker_config.classify_num
        check_window_limit(settings.window_seconds, classify_num, aligner.timestamp_segment_time)
        aligner.model.thinker.audio_tower.conv_chunksize = CONV_CHUNKS
        if device == "cpu" and dtype == "bfloat16":  # oneDNN's own layout; float32 keeps stock's exactly
            channels_last_convolutions(aligner.model.thinker.audio_tower)
        aligner.model.thinker.lm_head = TimestampHead(aligner.model.thinker.lm_head)
        if settings.encoder_attention == "windowed":
            enable_windowed_attention(aligner.model)
        engine = cls(aligner, settings, choice)
        engine.self_check()
        log.info("loaded %s on %s as %s (encoder attention: %s, memory limit %.1f GiB)",
                 path, device, dtype, settings.encoder_attention, memory / 1024**3)
        return engine

    @property
    def device(self) -> torch.device:
        return self.aligner.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.aligner.model.dtype

    def units(self, line: str, language: str) -> list[str]:
        """The alignable units of one lyric line, as qwen-asr splits them."""
        words, _ = self.aligner.aligner_processor.encode_timestamp(line, language)
        return words

    def self_check(self) -> None:
        """Fail loading if the tokenizer does not keep one <timestamp> token per marker."""
        units = self.units("奇异恩典 amazing grace", "Chinese")
        ids = self.aligner.processor.tokenizer(TIMESTAMP_PAIR.join(units) + TIMESTAMP_PAIR)["input_ids"]
        found = sum(1 for i in ids if i == self.aligner.timestamp_token_id)
        if found != 2 * len(units):
            raise ModelLoadError(
                f"tokenizer of {self.settings.model_path} splits <timestamp> wrongly "
                f"({found} timestamp tokens for {len(units)} units)"
            )

    def align(self, audio: np.ndarray, lines: list[str], language: str) -> Alignment:
        """Time ``lines`` (non-blank, stripped) against 16 kHz mono ``audio``: one forward pass of its own.

        Raises InvalidRequest when the lines hold nothing alignable, more
        units than the model can place, or more tokens than it takes; any
        other exception is a failure of the service.
        """
        prepared = self.prepare(audio, lines, language)
        return prepared.alignment(self._forward([prepared])[0])

    def align_many(self, calls: Sequence[tuple[np.ndarray, list[str], str]],
                   budget: BatchBudget) -> list[Alignment | Exception]:
        """``align`` of each (audio, lines, language), in batched forward passes within ``budget``.

        One answer per call, in order: its Alignment, or the exception
        ``align`` would raise for it alone (a bad call never fails the
        others). A batch that fails (out of device memory, or otherwise) is
        run again in halves (``batching.run_splitting``), so a failure stays
        with the call that fails alone. Each call's timestamp classes are
        those it gets alone: its audio is encoded alone, its prompt padded on
        the right with an attention mask, so its tokens' positions and
        attention are as alone; only the matrix products' blocking differs
        (tests/core/test_batch_invariance.py states the tolerance).
        """
        answers: list[Alignment | Exception | None] = [None] * len(calls)
        ready: list[tuple[int, Prepared]] = []
        for index, (audio, lines, language) in enumerate(calls):
            try:
                ready.append((index, self.prepare(audio, lines, language)))
            except Exception as error:  # noqa: BLE001 - each call's own refusal or failure is its answer
                answers[index] = error
        sizes = [(prepared.duration, prepared.tokens) for _, prepared in ready]
        for group in budget_groups(sizes, budget):
            members = [ready[i] for i in group]
            slots = run_splitting([prepared for _, prepared in members], self._forward, is_out_of_memory,
                                  free_device_cache)
            for (index, prepared), slot in zip(members, slots):
                answers[index] = slot if isinstance(slot, Exception) else prepared.alignment(slot)
        return answers  # type: ignore[return-value]

    def prepare(self, audio: np.ndarray, lines: list[str], language: str) -> Prepared:
        """One call's units and model inputs (on the CPU), checked as ``align`` checks them."""
        per_line = [self.units(line, language) for line in lines]
        units = [unit for words in per_line for unit in words]
        if not units:
            raise InvalidRequest("lyrics contain nothing alignable: no letters or digits in any line")
        if len(units) > self.max_units:
            raise InvalidRequest(
                f"lyrics have {len(units)} alignable units (CJK characters or words); "
                f"the model can place at most {self.max_units}"
            )
        audio = float_range_normalize(audio)
        prompt = AUDIO_PROMPT + TIMESTAMP_PAIR.join(units) + TIMESTAMP_PAIR
        inputs = self.aligner.processor(text=[prompt], audio=[audio], return_tensors="pt", padding=True)
        token_count = inputs["input_ids"].shape[1]
        if token_count > self.max_tokens:
            raise InvalidRequest(
                f"audio and lyrics make {token_count} model tokens; the model takes at most {self.max_tokens}"
            )
        is_timestamp = inputs["input_ids"][0] == self.aligner.timestamp_token_id
        if int(is_timestamp.sum()) != 2 * len(units):
            raise RuntimeError(f"tokenizer produced {int(is_timestamp.sum())} timestamp tokens for {len(units)} units")
        return Prepared(units, [len(words) for words in per_line], audio.shape[0] / SAMPLE_RATE, inputs, token_count)

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Prepared]) -> list[TimestampSlots]:
        """Start and end (ms, interleaved) of each unit of each call from one forward pass: argmax, the
        softmax probability of that class, and the monotonic repair. One call runs exactly as prepared;
        several are padded together (``batched_inputs``)."""
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = batched_inputs([prepared.inputs for prepared in batch], self.aligner.processor.tokenizer.pad_token_id)
            log.info("batched forward pass: %d calls, %.1f s of audio, %d padded tokens", len(batch),
                     sum(prepared.duration for prepared in batch), inputs["input_ids"].numel())
        inputs = inputs.to(self.device).to(self.dtype)
        is_timestamp = inputs["input_ids"] == self.aligner.timestamp_token_id
        thinker = self.aligner.model.thinker
        with thinker.lm_head.at(is_timestamp if len(batch) > 1 else is_timestamp[0]):
            slot_logits = thinker(**inputs, use_cache=False).logits
        slot_logits = slot_logits.reshape(-1, slot_logits.shape[-1])
        classes = slot_logits.argmax(dim=-1)
        # Softmax in float32 of the slots alone: 2 x units x classify_num values, no second pass.
        confidence = torch.softmax(slot_logits.float(), dim=-1).gather(1, classes[:, None])[:, 0].to("cpu").tolist()
        timestamp_ms = (classes * self.aligner.timestamp_segment_time).to("cpu").numpy()
        slots, start = [], 0
        for prepared in batch:
            end = start + 2 * len(prepared.units)
            own = timestamp_ms[start:end]
            slots.append(TimestampSlots(raw_ms=own.tolist(), repaired_ms=fix_timestamp(own),
                                        confidence=confidence[start:end]))
            start = end
        return slots


@dataclass(frozen=True)
class Prepared:
    """One call, checked and turned into the model's inputs (CPU tensors, batch of one)."""

    units: list[str]
    counts: list[int]  # units per line
    duration: float  # seconds of audio
    inputs: BatchFeature
    tokens: int  # prompt tokens, audio embeddings included

    def alignment(self, slots: TimestampSlots) -> Alignment:
        return alignment_from_slots(self.counts, self.units, slots.repaired_ms, slots.raw_ms, slots.confidence,
                                    self.duration)


def batched_inputs(parts: Sequence[BatchFeature], pad_token_id: int) -> BatchFeature:
    """Single-call inputs as one batch: prompts padded on the right (attention mask 0, ``pad_token_id``), audio
    features padded with zeros past each clip's frames (feature attention mask 0), each row otherwise its own."""
    tokens = max(part["input_ids"].shape[1] for part in parts)
    frames = max(part["input_features"].shape[2] for part in parts)

    def right_padded(name: str, length: int, value: float) -> torch.Tensor:
        return torch.cat([torch.nn.functional.pad(part[name], (0, length - part[name].shape[-1]), value=value)
                          for part in parts])

    return BatchFeature({
        "input_ids": right_padded("input_ids", tokens, pad_token_id),
        "attention_mask": right_padded("attention_mask", tokens, 0),
        "input_features": right_padded("input_features", frames, 0.0),
        "feature_attention_mask": right_padded("feature_attention_mask", frames, 0),
    })


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device running out of memory (a batch to split, not a failure)."""
    return isinstance(error, torch.OutOfMemoryError)


def free_device_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
