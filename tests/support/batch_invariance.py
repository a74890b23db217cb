"""How far a batched call's confidences may move from the call's own: the tolerance the batch-invariance
tests hold (tests/core/test_batch_invariance.py in-process, tests/server/test_server_batching.py through Triton,
tests/tools/test_gpu_check.py on the GPU check's report), all in float32 on CPU.

Timestamps, the classes, are held equal; only confidences get a tolerance. The informative checkpoint's head
scores class k as 2k*s(h) - k^2, so its logits reach the thousands, and float rounding of the padded rows'
attention (a masked kernel instead of the causal one; products of another height blocked otherwise) moves a
logit by a few hundredths. A probability p moves by about p(1 - p) times that: measured up to 2e-3 on AMD EPYC
(avx512_bf16, no AMX) and 5.6e-3 on another CI machine for a unit at p = 0.48. A row mixed with another's
(a wrong mask) moves times and confidences by far more.
"""
from __future__ import annotations

CONFIDENCE_TOLERANCE = 2e-2
