"""Loading Qwen3-ForcedAligner and aligning one request's lyric lines.

This is the only module of the package that needs torch and qwen-asr. For a
whole clip it runs the same computation as ``Qwen3ForcedAligner.align`` (same
prompt, same processor, same forward pass, same monotonic repair and
rounding; with the default windowed encoder attention, the forward pass is
stock's on CPU only for clips of one 8 s window, see encoder_windows), with
the per-request waste removed: the text is split into units
once, per line, so units map to lines without a second tokenisation, and the
forward pass keeps no KV cache, and the timestamp head runs only at the
timestamp tokens (``timestamp_head``).

A song is encoded once (``EncodedSong``): the mel features, the convolution
front end and the audio encoder run over the whole clip at its first forward
pass, and every pass over a part of it (a window of a long song, a
re-aligned run) takes that part's slice of the audio embeddings. A part
starts on the front end's 1 s chunk grid (``EncodedSong.grid``) and ends on
it or at the song's end, so its slice is whole chunks of the song's own
encoding, as many embeddings as the part encoded alone would give. The pass
over the whole clip is exactly the single pass above; what a part's slice
shares with the part encoded alone is in docs/design.md ("One encoding per
song").
"""
from __future__ import annotations

import json
import logging
import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Never reach a model hub at run time: the weights come from a local directory.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from qwen_asr import Qwen3ForcedAligner  # noqa: E402
from qwen_asr.core.transformers_backend.processing_qwen3_asr import _get_feat_extract_output_lengths  # noqa: E402
from qwen_asr.inference.utils import float_range_normalize  # noqa: E402

from sow_qwen3_contract.checkpoint import checkpoint_parameters, checkpoint_problem  # noqa: E402
from sow_qwen3_contract.tensors import SAMPLE_RATE  # noqa: E402

from . import amx_attention  # noqa: E402
from .access import permission_problem  # noqa: E402
from .alignment import Alignment, alignment_from_slots  # noqa: E402
from .batching import BatchBudget, budget_groups, run_splitting  # noqa: E402
from .conv_front_end import fuse_front_end  # noqa: E402
from .decoder_compile import compile_layers, uncompile_layers  # noqa: E402
from .dtype_probe import DtypeChoice, ProbeShapes, choose_cpu_dtype, measure_gflops  # noqa: E402
from .encoder_linears import fuse_linear_biases  # noqa: E402
from .encoder_windows import enable_windowed_attention  # noqa: E402
from .errors import InvalidRequest  # noqa: E402
from .last_layer import narrow_last_layer  # noqa: E402
from .settings import Settings, cgroup_memory_limit, check_window_limit, memory_limit, resolve_device, resolve_dtype  # noqa: E402
from .timestamp_head import TimestampHead  # noqa: E402
from .timestamps import fix_timestamp  # noqa: E402

log = logging.getLogger(__name__)

AUDIO_PAD = "<|audio_pad|>"
AUDIO_PROMPT = f"<|audio_start|>{AUDIO_PAD}<|audio_end|>"
TIMESTAMP_PAIR = "<timestamp><timestamp>"
# What the load-time self-check and warm-up align: CJK characters and words.
SELF_CHECK_LINES = ("奇异恩典 amazing grace",)
SELF_CHECK_LANGUAGE = "Chinese"
# One-second chunks the audio encoder's convolution front end runs at once.
# qwen-asr's default (500) holds a 300 s song's whole CNN activation, the
# service's peak memory; 50 cut the peak by about 1.6 GB at the same speed,
# and 4 keeps each batch's activations (and its GELUs) in cache: the audio
# encoder of a 120 s song 7 % faster in bfloat16 and 5 % in float32 on an
# Intel Xeon with AMX, bit-identical (docs/benchmarks.md).
CONV_CHUNKS = 4


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
        # The CPU kernels below are for bfloat16; float32 keeps stock's computation exactly.
        cpu_bfloat16 = device == "cpu" and dtype == "bfloat16"
        if cpu_bfloat16:  # oneDNN's own layout
            channels_last_convolutions(aligner.model.thinker.audio_tower)
        fused = cpu_bfloat16 and fuse_front_end(aligner.model.thinker.audio_tower)  # each GELU in its convolution
        biases = cpu_bfloat16 and fuse_linear_biases(aligner.model.thinker.audio_tower)  # each bias in its matmul
        aligner.model.thinker.lm_head = TimestampHead(aligner.model.thinker.lm_head)
        narrow_last_layer(aligner.model.thinker)
        # Before compiling: the compiled layers call the kernel as one step.
        amx = settings.attention_kernel == "auto" and cpu_bfloat16 and amx_attention.enable(aligner.model.thinker)
        if settings.encoder_attention == "windowed":
            enable_windowed_attention(aligner.model, amx_attention.windows_kernel if amx else None)
        engine = cls(aligner, settings, choice)
        engine.self_check()
        compiled = (settings.compile == "auto" and cpu_bfloat16
                    and engine.compile_decoder(batched=settings.batches_on(device)))
        log.info("loaded %s on %s as %s (convolutions: %s, encoder linears: %s, encoder attention: %s, decoder %s, "
                 "attention kernel: %s, memory limit %.1f GiB)", path, device, dtype,
                 "GELU fused" if fused else "qwen-asr's", "bias fused" if biases else "addmm",
                 settings.encoder_attention, "compiled" if compiled else "uncompiled",
                 "AMX kernel" if amx else "PyTorch's", memory / 1024**3)
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

    def compile_decoder(self, batched: bool) -> bool:
        """Compile the decoder's layers (``decoder_compile``) and warm them up; whether they now run compiled.

        The warm-up aligns a short silent clip, and with ``batched`` two spans
        in one batched pass (its attention mask is another graph), so that no
        request waits for a compile. When compiling fails (no C++ compiler, or
        any other error) the layers run uncompiled again and a warning says
        why: the model still loads.
        """
        thinker = self.aligner.model.thinker
        started = time.perf_counter()
        lines = list(SELF_CHECK_LINES)
        try:
            compile_layers(thinker)  # imports torch's compiler: this can fail too
            self.align(np.zeros(4 * SAMPLE_RATE, np.float32), lines, SELF_CHECK_LANGUAGE)
            if batched:
                spans = [self.clip_span(np.zeros(seconds * SAMPLE_RATE, np.float32), lines, SELF_CHECK_LANGUAGE)
                         for seconds in (2, 4)]
                failed = [answer for answer in self.align_many(spans, BatchBudget(1e9, 10**12))
                          if isinstance(answer, Exception)]
                if failed:
                    raise failed[0]
        except Exception as exc:  # noqa: BLE001 - any failure to compile leaves the eager model serving
            uncompile_layers(thinker)
            torch._dynamo.reset()
            # torch.compile wraps what its backend raised (BackendCompilerFailed): name that.
            cause = getattr(exc, "inner_exception", None) or exc
            reason = (str(cause).strip().splitlines() or [""])[0]
            log.warning("decoder not compiled, running uncompiled (set SOW_QWEN3_COMPILE=off to skip trying): "
                        "%s: %s", type(cause).__name__, reason[:300])
            return False
        log.info("decoder compiled (torch.compile) and warmed up in %.1f s", time.perf_counter() - started)
        return True

    def self_check(self) -> None:
        """Fail loading if the tokenizer does not keep one <timestamp> token per marker."""
        units = self.units(SELF_CHECK_LINES[0], SELF_CHECK_LANGUAGE)
        ids = self.aligner.processor.tokenizer(TIMESTAMP_PAIR.join(units) + TIMESTAMP_PAIR)["input_ids"]
        found = sum(1 for i in ids if i == self.aligner.timestamp_token_id)
        if found != 2 * len(units):
            raise ModelLoadError(
                f"tokenizer of {self.settings.model_path} splits <timestamp> wrongly "
                f"({found} timestamp tokens for {len(units)} units)"
            )

    def align(self, audio: np.ndarray, lines: list[str], language: str) -> Alignment:
        """Time ``lines`` (non-blank, stripped) against the whole of 16 kHz mono ``audio``: one forward pass.

        Raises InvalidRequest when the lines hold nothing alignable, more
        units than the model can place, or more tokens than it takes; any
        other exception is a failure of the service.
        """
        return self.align_span(self.clip_span(audio, lines, language))

    def clip_span(self, audio: np.ndarray, lines: list[str], language: str) -> Span:
        """The span that is the whole of ``audio``, a song of its own: what ``align`` aligns, and a call of
        ``align_many``."""
        return self.song(audio).span(0, len(audio), lines, language)

    def song(self, clip: np.ndarray, run: Callable[[Span], Alignment] | None = None) -> EncodedSong:
        """``clip`` (16 kHz mono) as the song whose parts are aligned (``windows.SongAudio``); nothing runs yet.

        ``run`` answers each of its spans: by default ``align_span`` (one
        forward pass of its own); the model's request threads pass their
        ``batching.Rendezvous.submit``, whose rounds call ``align_many``.
        """
        return EncodedSong(self, clip, run or self.align_span)

    def align_span(self, span: Span) -> Alignment:
        """``span``'s lines timed on its part of its song (times from the part's start): one forward pass.

        Raises as ``align`` does.
        """
        prepared = self.prepare(span)
        return prepared.alignment(self._forward([prepared])[0])

    def align_many(self, spans: Sequence[Span], budget: BatchBudget) -> list[Alignment | Exception]:
        """``align_span`` of each span, in batched forward passes within ``budget``.

        One answer per span, in order: its Alignment, or the exception
        ``align_span`` would raise for it alone (a bad span never fails the
        others). A batch that fails (out of device memory, or otherwise) is
        run again in halves (``batching.run_splitting``), so a failure stays
        with the span that fails alone. Each span's timestamp classes are
        those it gets alone: its audio embeddings are its song's, encoded
        alone, its prompt padded on the right with an attention mask, so its
        tokens' positions and attention are as alone; only the matrix
        products' blocking differs (tests/core/test_batch_invariance.py
        states the tolerance).
        """
        answers: list[Alignment | Exception | None] = [None] * len(spans)
        ready: list[tuple[int, Prepared]] = []
        for index, span in enumerate(spans):
            try:
                ready.append((index, self.prepare(span)))
            except Exception as error:  # noqa: BLE001 - each span's own refusal or failure is its answer
                answers[index] = error
        sizes = [(prepared.duration, prepared.tokens) for _, prepared in ready]
        for group in budget_groups(sizes, budget):
            members = [ready[i] for i in group]
            slots = run_splitting([prepared for _, prepared in members], self._forward, is_out_of_memory,
                                  free_device_cache)
            for (index, prepared), slot in zip(members, slots):
                answers[index] = slot if isinstance(slot, Exception) else prepared.alignment(slot)
        return answers  # type: ignore[return-value]

    def prepare(self, span: Span) -> Prepared:
        """One span's units and model inputs, checked as ``align`` checks them; its song is encoded (once) only
        after the checks pass."""
        per_line = [self.units(line, span.language) for line in span.lines]
        units = [unit for words in per_line for unit in words]
        if not units:
            raise InvalidRequest("lyrics contain nothing alignable: no letters or digits in any line")
        if len(units) > self.max_units:
            raise InvalidRequest(
                f"lyrics have {len(units)} alignable units (CJK characters or words); "
                f"the model can place at most {self.max_units}"
            )
        first, stop = span.song.embedding_range(span.low, span.high)
        # As the processor expands the audio placeholder for a clip of this part's length.
        prompt = AUDIO_PROMPT.replace(AUDIO_PAD, AUDIO_PAD * (stop - first)) + TIMESTAMP_PAIR.join(units) + TIMESTAMP_PAIR
        tokens = self.aligner.processor.tokenizer([prompt], return_tensors="pt")
        token_count = tokens["input_ids"].shape[1]
        if token_count > self.max_tokens:
            raise InvalidRequest(
                f"audio and lyrics make {token_count} model tokens; the model takes at most {self.max_tokens}"
            )
        is_timestamp = tokens["input_ids"][0] == self.aligner.timestamp_token_id
        if int(is_timestamp.sum()) != 2 * len(units):
            raise RuntimeError(f"tokenizer produced {int(is_timestamp.sum())} timestamp tokens for {len(units)} units")
        return Prepared(units, [len(words) for words in per_line], (span.high - span.low) / SAMPLE_RATE,
                        tokens["input_ids"], tokens["attention_mask"], span.song.embeddings()[first:stop], token_count)

    @torch.inference_mode()
    def encode(self, clip: np.ndarray) -> torch.Tensor:
        """The audio embeddings of the whole of ``clip`` (normalised 16 kHz mono), one row per audio token, on the
        model's device: the processor's mel features and the audio encoder, exactly as the thinker's forward pass
        computes them for this clip."""
        features = self.aligner.processor(text=[AUDIO_PROMPT], audio=[clip], return_tensors="pt", padding=True)
        features = features.to(self.device).to(self.dtype)
        return self.aligner.model.thinker.get_audio_features(
            features["input_features"], feature_attention_mask=features["feature_attention_mask"])

    @torch.inference_mode()
    def _forward(self, batch: Sequence[Prepared]) -> list[TimestampSlots]:
        """Start and end (ms, interleaved) of each unit of each span from one forward pass: argmax, the
        softmax probability of that class, and the monotonic repair. One span runs exactly as prepared;
        several are padded together on the right (pad token, attention mask 0)."""
        thinker = self.aligner.model.thinker
        if len(batch) == 1:
            input_ids, attention_mask = batch[0].input_ids, batch[0].attention_mask
        else:
            input_ids, attention_mask = padded_prompts(batch, self.aligner.processor.tokenizer.pad_token_id)
            log.info("batched forward pass: %d spans, %.1f s of audio, %d padded tokens", len(batch),
                     sum(prepared.duration for prepared in batch), input_ids.numel())
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        embeddings = thinker.get_input_embeddings()(input_ids)
        # The audio tokens' embeddings, row after row, as the thinker's forward pass merges them.
        is_audio = (input_ids == thinker.config.audio_token_id).unsqueeze(-1).expand_as(embeddings)
        audio = torch.cat([prepared.audio for prepared in batch]).to(embeddings.device, embeddings.dtype)
        embeddings = embeddings.masked_scatter(is_audio, audio)
        is_timestamp = input_ids == self.aligner.timestamp_token_id
        with thinker.lm_head.at(is_timestamp if len(batch) > 1 else is_timestamp[0]):
            slot_logits = thinker(inputs_embeds=embeddings, attention_mask=attention_mask, use_cache=False).logits
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


class EncodedSong:
    """One song's audio as the engine aligns it (``windows.SongAudio``), encoded once, at its first forward pass.

    ``samples`` is the clip's length; ``grid`` the front end's chunk in
    samples (1 s): a part starts on a multiple of it and ends on one or at
    the song's end. One request's thread uses a song at a time (a
    ``Rendezvous`` round runs while that thread waits), so it takes no lock.
    """

    def __init__(self, engine: AlignmentEngine, clip: np.ndarray, run: Callable[[Span], Alignment]) -> None:
        self.clip = float_range_normalize(clip)
        self.samples = int(self.clip.shape[0])
        feature_extractor = engine.aligner.processor.feature_extractor
        self.hop = int(feature_extractor.hop_length)
        self.grid = int(engine.aligner.model.thinker.audio_tower.n_window) * 2 * self.hop
        self._engine = engine
        self._run = run
        self._embeddings: torch.Tensor | None = None

    def align(self, low: int, high: int, lines: list[str], language: str) -> Alignment:
        """``lines`` timed on samples [low, high) of the song, times from ``low``: one forward pass (see
        ``AlignmentEngine.align``)."""
        return self._run(self.span(low, high, lines, language))

    def span(self, low: int, high: int, lines: list[str], language: str) -> Span:
        return Span(self, low, high, lines, language)

    def embedding_range(self, low: int, high: int) -> tuple[int, int]:
        """The rows [first, stop) of the song's audio embeddings that samples [low, high) take.

        Raises ValueError unless 0 <= low < high <= samples, ``low`` is on the
        grid and ``high`` on it or the song's end.
        """
        if not (0 <= low < high <= self.samples and low % self.grid == 0
                and (high % self.grid == 0 or high == self.samples)):
            raise ValueError(f"samples [{low}, {high}) of a {self.samples}-sample song are not on its "
                             f"{self.grid}-sample grid")
        return self._rows(low), self._rows(high)

    def _rows(self, sample: int) -> int:
        """The audio embeddings of the song's mel frames before ``sample`` (a grid point or the end)."""
        return int(_get_feat_extract_output_lengths(torch.tensor(sample // self.hop)))

    def embeddings(self) -> torch.Tensor:
        """The whole song's audio embeddings (``AlignmentEngine.encode``), computed at the first call."""
        if self._embeddings is None:
            embeddings = self._engine.encode(self.clip)
            if embeddings.shape[0] != self._rows(self.samples):
                raise RuntimeError(f"the audio encoder gave {embeddings.shape[0]} embeddings for {self.samples} "
                                   f"samples, not {self._rows(self.samples)}")
            self._embeddings = embeddings
        return self._embeddings


@dataclass(frozen=True)
class Span:
    """One forward pass asked for: ``lines`` timed on samples [low, high) of ``song``."""

    song: EncodedSong
    low: int
    high: int
    lines: list[str]
    language: str


@dataclass(frozen=True)
class Prepared:
    """One span, checked and turned into the model's inputs: its prompt (CPU tensors, batch of one) and its
    slice of its song's audio embeddings."""

    units: list[str]
    counts: list[int]  # units per line
    duration: float  # seconds of audio
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    audio: torch.Tensor  # (audio tokens, hidden size)
    tokens: int  # prompt tokens, audio embeddings included

    def alignment(self, slots: TimestampSlots) -> Alignment:
        return alignment_from_slots(self.counts, self.units, slots.repaired_ms, slots.raw_ms, slots.confidence,
                                    self.duration)


def padded_prompts(batch: Sequence[Prepared], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The spans' prompts as one batch, padded on the right: (input ids with ``pad_token_id``, attention mask 0)."""
    length = max(prepared.tokens for prepared in batch)

    def right_padded(name: str, value: int) -> torch.Tensor:
        return torch.cat([torch.nn.functional.pad(getattr(prepared, name), (0, length - prepared.tokens), value=value)
                          for prepared in batch])

    return right_padded("input_ids", pad_token_id), right_padded("attention_mask", 0)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the device running out of memory (a batch to split, not a failure)."""
    return isinstance(error, torch.OutOfMemoryError)


def free_device_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
