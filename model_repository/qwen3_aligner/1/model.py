"""Triton Python-backend model ``qwen3_aligner``: lyric-line timing with Qwen3-ForcedAligner.

Thin by design: tensors in and out, the BLS call to the VAD model, per-request
errors, logging and metrics. The request path itself is
``sow_aligner.request.align_request`` (the aligner core, installed like any
library). Tensor names and types come from config.pbtxt.
"""
from __future__ import annotations

import json
import locale
import logging
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import triton_python_backend_utils as pb_utils

# The aligner core, installed like any library (core/, package sow_aligner).
from sow_aligner import settings as sow_settings
from sow_aligner.batching import BatchBudget, Rendezvous
from sow_aligner.errors import InvalidRequest
from sow_aligner.request import ResponseValues, align_request
from sow_qwen3_contract.quality import Thresholds

log = logging.getLogger("qwen3_aligner")


class TritonLogHandler(logging.Handler):
    """Sends Python logging records to Triton's log at the matching level."""

    def emit(self, record: logging.LogRecord) -> None:
        message = self.format(record)
        if record.levelno >= logging.ERROR:
            pb_utils.Logger.log_error(message)
        elif record.levelno >= logging.WARNING:
            pb_utils.Logger.log_warn(message)
        else:
            pb_utils.Logger.log_info(message)


class AlignmentMetrics:
    """The model's custom Prometheus metrics (served on Triton's metrics port).

    Counters of aligned audio, lines and outcomes; gauges of the dtype the
    instance runs in (1 for its dtype and reason) and of the load-time dtype
    probe's figure per measured dtype (GFLOP/s). Triton 2.51 sometimes shows
    a gauge set in ``initialize`` as 0 (seen in 3 of about 10 starts on a
    busy machine), so the dtype gauge is set again with every request.
    """

    def __init__(self, model_name: str, version: str, dtype_choice) -> None:
        labels = {"model": model_name, "version": version}
        counter, gauge = pb_utils.MetricFamily.COUNTER, pb_utils.MetricFamily.GAUGE
        # The families must outlive their metrics, so they are kept here.
        self._families = {
            name: pb_utils.MetricFamily(name=name, description=description, kind=kind)
            for name, description, kind in (
                ("sow_qwen3_audio_seconds_total", "Seconds of audio aligned successfully", counter),
                ("sow_qwen3_lines_total", "Lyric lines aligned successfully", counter),
                ("sow_qwen3_alignments_total", "Alignment requests by outcome", counter),
                ("sow_qwen3_dtype", "1 for the dtype this model runs in, labelled with why it was chosen", gauge),
                ("sow_qwen3_dtype_probe_gflops", "Load-time dtype probe: GFLOP/s per measured dtype", gauge),
            )
        }
        self._dtype = self._families["sow_qwen3_dtype"].Metric(
            labels={**labels, "dtype": dtype_choice.dtype, "reason": dtype_choice.reason})
        self._dtype.set(1.0)
        self._probe = [self._families["sow_qwen3_dtype_probe_gflops"].Metric(labels={**labels, "dtype": dtype})
                       for dtype in dtype_choice.gflops]
        for metric, gflops in zip(self._probe, dtype_choice.gflops.values()):
            metric.set(gflops)
        self._audio = self._families["sow_qwen3_audio_seconds_total"].Metric(labels=labels)
        self._lines = self._families["sow_qwen3_lines_total"].Metric(labels=labels)
        self._outcomes = {
            outcome: self._families["sow_qwen3_alignments_total"].Metric(labels={**labels, "outcome": outcome})
            for outcome in ("ok", "bad_input", "failed")
        }

    def record(self, outcome: str, audio_seconds: float = 0.0, lines: int = 0) -> None:
        self._dtype.set(1.0)
        self._outcomes[outcome].increment(1)
        if outcome == "ok":
            self._audio.increment(audio_seconds)
            self._lines.increment(lines)


class TritonPythonModel:
    """``initialize`` loads the aligner once per instance; ``execute`` answers each request on its own."""

    def initialize(self, args: dict) -> None:
        handler = TritonLogHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)

        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.output_types = {
            output["name"]: pb_utils.triton_string_to_numpy(output["data_type"]) for output in config["output"]
        }
        self.instance_name = args["model_instance_name"]
        try:
            settings = sow_settings.resolve(parameters, os.environ)
            self.thresholds = Thresholds.from_parameters(parameters)
            instance_count = sum(int(group.get("count", 1)) for group in config.get("instance_group", [])) or 1
            # The stub's embedded Python keeps the bare C locale (ASCII) whatever LANG says, and open() reads
            # text in the locale's encoding: torch.compile reads its kernel templates so (SOW_QWEN3_COMPILE).
            try:
                locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
            except locale.Error as exc:
                log.warning("%s: no C.UTF-8 locale (%s): compiling the decoder may fail", self.instance_name, exc)
            # torch is imported only now, so that a settings error is reported fast.
            import torch

            torch.set_num_threads(sow_settings.torch_threads_for(settings, instance_count))
            from sow_aligner.engine import AlignmentEngine

            started = time.monotonic()
            self.engine = AlignmentEngine.load(
                settings, args["model_instance_kind"], int(args["model_instance_device_id"]), instance_count)
        except Exception as exc:
            log.error("%s: loading failed: %s", self.instance_name, exc)
            raise
        self.settings = settings
        self.batching = settings.batches_on(str(self.engine.device))
        self.budget = BatchBudget(settings.batch_audio_seconds, settings.batch_tokens)
        self._vad_lock = threading.Lock()
        self.metrics = AlignmentMetrics(args["model_name"], args["model_version"], self.engine.dtype_choice)
        log.info(
            "%s: ready in %.1f s (torch threads %d, audio limit %g s, windows of %g s, %d re-alignment passes, "
            "cross-request batching %s)",
            self.instance_name, time.monotonic() - started, torch.get_num_threads(), settings.max_audio_seconds,
            settings.window_seconds, settings.realign_passes,
            f"on (at most {settings.batch_audio_seconds:g} s of audio, {settings.batch_tokens} padded tokens)"
            if self.batching else "off",
        )

    def execute(self, requests: list) -> list:
        """One response per request, in order; a bad request never fails its neighbours.

        With batching on (settings.batches_on), each request runs its request
        path in a thread of its own and their forward passes meet in shared
        batches (sow_aligner.batching.Rendezvous); otherwise one after
        another. Triton's objects (input and output tensors, responses) are
        touched in this thread only; the VAD calls (BLS) go one at a time.
        """
        received = [Received.of(request) for request in requests]
        if len(received) == 1 or not self.batching:
            results = [self._align(item, self.engine.song) for item in received]
        else:
            rendezvous = Rendezvous(len(received), lambda spans: self.engine.align_many(spans, self.budget))

            def align(item: Received) -> Result:
                try:
                    return self._align(item, lambda clip: self.engine.song(clip, run=rendezvous.submit))
                finally:
                    rendezvous.leave()

            with ThreadPoolExecutor(max_workers=len(received), thread_name_prefix="request") as pool:
                results = list(pool.map(align, received))
        return [self._respond(result) for result in results]

    def _align(self, item: Received, song_audio) -> Result:
        """The request path for one request's inputs; its values, or why it has none."""
        try:
            values = align_request(
                item.audio, item.lyrics, item.language, song_audio=song_audio,
                voice_activity=lambda clip: self._voiced_segments(clip, item.request_id),
                settings=self.settings, thresholds=self.thresholds,
            )
        except InvalidRequest as exc:
            return Result(item, "bad_input", message=str(exc), audio_seconds=exc.audio_seconds)
        except Exception as exc:
            log.error("request %s: alignment failed\n%s", item.request_id, traceback.format_exc())
            return Result(item, "failed", message=f"alignment failed: {type(exc).__name__}: {exc}")
        log.info("request %s: %s", item.request_id, values.description)
        return Result(item, "ok", values=values)

    def _respond(self, result: Result) -> pb_utils.InferenceResponse:
        if result.values is not None:
            response = self._response(result.values.outputs)
            seconds, lines = result.values.audio_seconds, result.values.lines
        else:
            code = pb_utils.TritonError.INVALID_ARG if result.outcome == "bad_input" else pb_utils.TritonError.INTERNAL
            response = pb_utils.InferenceResponse(error=pb_utils.TritonError(result.message, code))
            seconds, lines = result.audio_seconds, 0
        self.metrics.record(result.outcome, seconds, lines)
        log.info(
            "request %s: outcome=%s audio_s=%.2f lines=%d ms=%.0f",
            result.received.request_id, result.outcome, seconds, lines,
            (time.monotonic() - result.received.started) * 1000,
        )
        return response

    def _voiced_segments(self, clip: np.ndarray, request_id: str) -> list[tuple[float, float]] | None:
        """The VAD model's voiced (start, end) seconds for ``clip``, through Triton (BLS): align_request's VAD.

        None when no VAD model is configured or it cannot answer: the alignment
        still answers, and its flags say that voice activity was not measured.
        """
        if not self.settings.vad_model:
            return None
        with self._vad_lock:
            return self._ask_vad(clip, request_id)

    def _ask_vad(self, clip: np.ndarray, request_id: str) -> list[tuple[float, float]] | None:
        try:
            response = pb_utils.InferenceRequest(
                model_name=self.settings.vad_model,
                requested_output_names=["SEGMENT_START", "SEGMENT_END"],
                inputs=[pb_utils.Tensor("AUDIO", clip.reshape(1, -1))],
            ).exec()
            if response.has_error():
                raise RuntimeError(response.error().message())
            starts = pb_utils.get_output_tensor_by_name(response, "SEGMENT_START").as_numpy().reshape(-1)
            ends = pb_utils.get_output_tensor_by_name(response, "SEGMENT_END").as_numpy().reshape(-1)
        except Exception as exc:  # any failure of the VAD leaves the alignment standing
            log.warning("request %s: voice activity not measured: %s: %s", request_id, self.settings.vad_model, exc)
            return None
        return [(float(start), float(end)) for start, end in zip(starts, ends)]

    def _response(self, values: dict[str, list]) -> pb_utils.InferenceResponse:
        """The response tensors of ``values`` (output name -> values), each in config.pbtxt's type with the batch
        dimension of 1."""
        tensors = []
        for name, dtype in self.output_types.items():
            data = values[name]
            if dtype == np.object_:
                array = np.array([[item.encode("utf-8") for item in data]], dtype=np.object_)
            else:
                array = np.asarray([data], dtype=dtype)
            tensors.append(pb_utils.Tensor(name, array))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        log.info("%s: unloading", getattr(self, "instance_name", "qwen3_aligner"))
        self.engine = None


@dataclass(frozen=True)
class Received:
    """One request's inputs, read from Triton's tensors (in execute's thread)."""

    request_id: str
    started: float  # time.monotonic() when execute() took it
    audio: np.ndarray
    lyrics: np.ndarray | None
    language: np.ndarray | None

    @classmethod
    def of(cls, request) -> Received:
        return cls(request.request_id() or "-", time.monotonic(),
                   pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy(),
                   _optional_input(request, "LYRICS"), _optional_input(request, "LANGUAGE"))


@dataclass(frozen=True)
class Result:
    """What one request's path gave: its values ("ok"), or the error message ("bad_input", "failed")."""

    received: Received
    outcome: str
    values: ResponseValues | None = None
    message: str = ""
    audio_seconds: float = 0.0  # a refused request's clip duration, when known (its log line shows it)


def _optional_input(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()
