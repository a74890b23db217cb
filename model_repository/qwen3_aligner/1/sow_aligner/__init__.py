"""Pure, importable logic behind the ``qwen3_aligner`` Triton model.

Everything here except ``engine`` and ``encoder_windows`` runs without torch or Triton, so unit tests
import it directly; ``model.py`` beside this package stays a thin adapter.
"""
