"""Silero VAD over one clip: per-frame speech probabilities and voiced segments.

The weights are the ones the pinned ``silero-vad`` package ships inside its
wheel: the 16 kHz half of its TorchScript model ``silero_vad/data/silero_vad.jit``
(what ``silero_vad.load_silero_vad()`` loads), read from the installed
package: no hub, no download. The network is that model's (silero-vad's
``tinygrad_model.py`` spells it out): per 32 ms frame, an
STFT convolution and four convolutions encode the frame (with the last 64
samples of the frame before as context), an LSTM cell carries state from frame
to frame, and a 1x1 convolution with a sigmoid gives the probability.

The stock model runs that one frame at a time from Python (about 9,400 calls
for 5 minutes). Here the encoder runs on all frames at once and the LSTM is
torch's ``nn.LSTM`` over the whole sequence: the same arithmetic, a few
hundred milliseconds for a 5-minute song. tests/test_voice_activity.py checks
the probabilities against the package's TorchScript model run frame by frame.
Segments come from the package's ``get_speech_timestamps_from_probs``, so they
are what ``silero_vad.get_speech_timestamps`` gives for the same settings.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.functional import conv1d

from sow_qwen3_contract.tensors import SAMPLE_RATE, VAD_FRAME_SAMPLES


def _import_segmenter():
    """silero-vad's segmentation function. Importing the package sets torch to one
    thread for the whole process; the caller's setting is put back."""
    threads = torch.get_num_threads()
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    torch.set_num_threads(threads)
    return get_speech_timestamps_from_probs


get_speech_timestamps_from_probs = _import_segmenter()
FRAME_SAMPLES = VAD_FRAME_SAMPLES  # the model's window at 16 kHz: 32 ms
CONTEXT_SAMPLES = 64  # the end of the previous frame that each frame sees
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
WEIGHTS = "silero_vad.jit"


@dataclass(frozen=True)
class SegmentSettings:
    """``get_speech_timestamps`` settings (config.pbtxt parameters of silero_vad)."""

    threshold: float = 0.5
    min_speech_duration_ms: int = 250
    min_silence_duration_ms: int = 100
    speech_pad_ms: int = 30

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str]) -> SegmentSettings:
        """The settings of silero_vad's config.pbtxt ``parameters`` (key -> string value); KeyError or
        ValueError for a missing or malformed one."""
        return cls(
            threshold=float(parameters["threshold"]),
            min_speech_duration_ms=int(parameters["min_speech_duration_ms"]),
            min_silence_duration_ms=int(parameters["min_silence_duration_ms"]),
            speech_pad_ms=int(parameters["speech_pad_ms"]),
        )


@dataclass(frozen=True)
class VoiceActivity:
    """One clip's result: frame k covers [k, k + 1) * FRAME_SECONDS."""

    frame_probability: np.ndarray  # float32 [frames]
    segment_start: np.ndarray  # float32 seconds [segments]
    segment_end: np.ndarray  # float32 seconds [segments]


class SileroNetwork(torch.nn.Module):
    """silero-vad's 16 kHz network, with the frame loop moved into ``nn.LSTM``."""

    def __init__(self, weights: dict[str, torch.Tensor]) -> None:
        """``weights``: the state dict of the TorchScript model's 16 kHz part (its names)."""
        super().__init__()
        self.weights = weights
        self.lstm = torch.nn.LSTM(128, 128, batch_first=True)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(self.lstm, f"{name}_l0").copy_(weights[f"decoder.rnn.{name}"])

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """[frames, 64 + 512] samples (context + frame) -> [frames, 128] features, all frames at once."""
        w = self.weights
        x = torch.nn.functional.pad(frames, (0, 64), mode="reflect")[:, None, :]
        x = conv1d(x, w["stft.forward_basis_buffer"], stride=128)
        cutoff = x.shape[1] // 2
        x = (x[:, :cutoff] ** 2 + x[:, cutoff:] ** 2).sqrt()
        for layer, stride in enumerate((1, 2, 2, 1)):
            x = torch.relu(conv1d(x, w[f"encoder.{layer}.reparam_conv.weight"],
                                  w[f"encoder.{layer}.reparam_conv.bias"], stride=stride, padding=1))
        return x.squeeze(-1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Speech probability per frame, the LSTM state starting at zero."""
        hidden, _ = self.lstm(self.encode(frames)[None])
        x = torch.relu(hidden[0])[:, :, None]
        head = self.weights["decoder.decoder.2.weight"], self.weights["decoder.decoder.2.bias"]
        return torch.sigmoid(conv1d(x, *head))[:, 0, 0]


def frames_with_context(audio: torch.Tensor) -> torch.Tensor:
    """[frames, 64 + 512]: each 512-sample frame (the last one zero-padded) after the
    last 64 samples of the frame before it (zeros for the first)."""
    frames = -(-audio.numel() // FRAME_SAMPLES)
    padded = torch.zeros(CONTEXT_SAMPLES + frames * FRAME_SAMPLES)
    padded[CONTEXT_SAMPLES:CONTEXT_SAMPLES + audio.numel()] = audio
    return padded.unfold(0, CONTEXT_SAMPLES + FRAME_SAMPLES, FRAME_SAMPLES)


def package_weights() -> Path:
    """The 16 kHz weights inside the installed silero-vad package.

    Raises FileNotFoundError naming the problem when the package or the file is missing.
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the silero-vad package is not installed (requirements/server.txt pins it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"the silero-vad package has no weights at {path}")
    return path


class SileroVad:
    """The loaded VAD; each call starts from a fresh state, so calls are independent."""

    def __init__(self, settings: SegmentSettings, weights: Path | None = None) -> None:
        self.settings = settings
        scripted = torch.jit.load(str(weights or package_weights()), map_location="cpu")
        self.network = SileroNetwork(dict(scripted._model.state_dict())).eval()  # the 16 kHz model

    @torch.inference_mode()
    def frame_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of each 512-sample frame of 16 kHz mono ``audio`` (the last one zero-padded)."""
        samples = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        return self.network(frames_with_context(samples)).numpy().astype(np.float32)

    def run(self, audio: np.ndarray) -> VoiceActivity:
        """Frame probabilities and voiced segments (seconds) of ``audio``."""
        probabilities = self.frame_probabilities(audio)
        segments = get_speech_timestamps_from_probs(
            probabilities.tolist(),
            sampling_rate=SAMPLE_RATE,
            threshold=self.settings.threshold,
            min_speech_duration_ms=self.settings.min_speech_duration_ms,
            min_silence_duration_ms=self.settings.min_silence_duration_ms,
            speech_pad_ms=self.settings.speech_pad_ms,
            audio_length_samples=int(audio.shape[0]),
        )
        starts = np.array([segment["start"] / SAMPLE_RATE for segment in segments], dtype=np.float32)
        ends = np.array([segment["end"] / SAMPLE_RATE for segment in segments], dtype=np.float32)
        return VoiceActivity(probabilities, starts, ends)
