"""Pure, importable logic behind the ``qwen3_aligner`` Triton model.

Everything here except ``engine``, ``encoder_windows`` and ``timestamp_head`` runs without torch or
Triton (``dtype_probe`` imports torch only to measure), so unit tests
import it directly; ``model.py`` beside this package stays a thin adapter.
"""
