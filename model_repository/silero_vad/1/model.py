"""Triton Python-backend model ``silero_vad``: voiced segments of a clip.

Thin: tensors in and out, per-request errors and logging. The VAD itself is
``voice_activity.SileroVad``; tensor names come from config.pbtxt.
"""
from __future__ import annotations

import json
import time
import traceback

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from sow_aligner.voice_activity import SAMPLE_RATE, SegmentSettings, SileroVad


class RequestError(ValueError):
    """A request the model cannot take; the message names the problem (HTTP 400)."""


def one_clip(audio: np.ndarray, max_seconds: float) -> np.ndarray:
    """The single 1-D clip of an AUDIO tensor [1, N], checked."""
    if audio.ndim != 2 or audio.shape[0] != 1:
        raise RequestError(f"AUDIO must have shape [1, samples] (one mono 16 kHz clip per request); got {list(audio.shape)}")
    clip = audio[0]
    if clip.size == 0:
        raise RequestError("AUDIO is empty: send at least one sample of 16 kHz mono audio")
    if not np.all(np.isfinite(clip)):
        raise RequestError("AUDIO has non-finite samples (NaN or infinity); samples must lie in [-1, 1]")
    if clip.size / SAMPLE_RATE > max_seconds:
        raise RequestError(f"audio is {clip.size / SAMPLE_RATE:.2f} s long; the limit is {max_seconds:g} s")
    return clip.astype(np.float32, copy=False)


class TritonPythonModel:
    """Loads the VAD once per instance and answers each request on its own."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.instance_name = args["model_instance_name"]
        try:
            self.max_seconds = float(parameters["max_audio_seconds"])
            torch.set_num_threads(max(1, int(parameters["torch_threads"])))
            settings = SegmentSettings.from_parameters(parameters)
            self.vad = SileroVad(settings)
        except Exception as exc:
            pb_utils.Logger.log_error(f"{self.instance_name}: loading failed: {type(exc).__name__}: {exc}")
            raise
        self.output_types = {
            output["name"]: pb_utils.triton_string_to_numpy(output["data_type"]) for output in config["output"]
        }
        pb_utils.Logger.log_info(f"{self.instance_name}: ready ({settings})")

    def execute(self, requests: list) -> list:
        """One response per request, in order; a bad request never fails its neighbours."""
        return [self._respond(request) for request in requests]

    def _respond(self, request) -> pb_utils.InferenceResponse:
        started = time.monotonic()
        request_id = request.request_id() or "-"
        try:
            clip = one_clip(pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy(), self.max_seconds)
            activity = self.vad.run(clip)
            values = {
                "SEGMENT_START": activity.segment_start,
                "SEGMENT_END": activity.segment_end,
                "FRAME_PROBABILITY": activity.frame_probability,
            }
            tensors = [pb_utils.Tensor(name, np.asarray(values[name], dtype=dtype)[None, :])
                       for name, dtype in self.output_types.items()]
            response = pb_utils.InferenceResponse(output_tensors=tensors)
            outcome = f"ok segments={activity.segment_start.size}"
        except RequestError as exc:
            outcome = "bad_input"
            response = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
        except Exception as exc:
            outcome = "failed"
            pb_utils.Logger.log_error(f"silero_vad: request {request_id}: voice activity failed\n{traceback.format_exc()}")
            response = pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"voice activity failed: {type(exc).__name__}: {exc}",
                                           pb_utils.TritonError.INTERNAL))
        pb_utils.Logger.log_info(
            f"silero_vad: request {request_id}: outcome={outcome} ms={(time.monotonic() - started) * 1000:.0f}")
        return response
