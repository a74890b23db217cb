"""The aligner core behind the ``qwen3_aligner`` Triton model, installed like any library (core/).

Everything here except ``engine``, ``encoder_windows`` and ``timestamp_head`` runs without torch or
Triton (``dtype_probe`` imports torch only to measure), so unit tests
import it directly; the model repository's ``model.py`` stays a thin adapter.
"""
