"""Triton Python-backend model ``qwen3_aligner``: lyric-line timing with Qwen3-ForcedAligner.

Thin by design: tensors in and out, the BLS call to the VAD model, per-request
errors, logging and metrics. The request path itself is
``sow_aligner.request.align_request`` (the aligner core, installed like any
library). Tensor names and types come from config.pbtxt.
"""
from __future__ import annotations

import json
import logging
import os
import time
import traceback

import numpy as np
import triton_python_backend_utils as pb_utils

# The aligner core, installed like any library (core/, package sow_aligner).
from sow_aligner import settings as sow_settings
from sow_aligner.errors import InvalidRequest
from sow_aligner.request import align_request
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
        self.metrics = AlignmentMetrics(args["model_name"], args["model_version"], self.engine.dtype_choice)
        log.info(
            "%s: ready in %.1f s (torch threads %d, audio limit %g s, windows of %g s, %d re-alignment passes)",
            self.instance_name, time.monotonic() - started, torch.get_num_threads(), settings.max_audio_seconds,
            settings.window_seconds, settings.realign_passes,
        )

    def execute(self, requests: list) -> list:
        """One response per request, in order; a bad request never fails its neighbours."""
        return [self._respond(request) for request in requests]

    def _respond(self, request) -> pb_utils.InferenceResponse:
        started = time.monotonic()
        request_id = request.request_id() or "-"
        seconds, lines = 0.0, 0
        try:
            values = align_request(
                pb_utils.get_input_tensor_by_name(request, "AUDIO").as_numpy(),
                _optional_input(request, "LYRICS"),
                _optional_input(request, "LANGUAGE"),
                engine_align=self.engine.align,
                voice_activity=lambda clip: self._voiced_segments(clip, request_id),
                settings=self.settings, thresholds=self.thresholds,
            )
            seconds, lines = values.audio_seconds, values.lines
            log.info("request %s: %s", request_id, values.description)
            response = self._response(values.outputs)
            outcome = "ok"
        except InvalidRequest as exc:
            outcome = "bad_input"
            response = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))
        except Exception as exc:
            outcome = "failed"
            log.error("request %s: alignment failed\n%s", request_id, traceback.format_exc())
            response = pb_utils.InferenceResponse(
                error=pb_utils.TritonError(f"alignment failed: {type(exc).__name__}: {exc}", pb_utils.TritonError.INTERNAL)
            )
        self.metrics.record(outcome, seconds, lines)
        log.info(
            "request %s: outcome=%s audio_s=%.2f lines=%d ms=%.0f",
            request_id, outcome, seconds, lines, (time.monotonic() - started) * 1000,
        )
        return response

    def _voiced_segments(self, clip: np.ndarray, request_id: str) -> list[tuple[float, float]] | None:
        """The VAD model's voiced (start, end) seconds for ``clip``, through Triton (BLS): align_request's VAD.

        None when no VAD model is configured or it cannot answer: the alignment
        still answers, and its flags say that voice activity was not measured.
        """
        if not self.settings.vad_model:
            return None
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


def _optional_input(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()
