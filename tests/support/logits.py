"""Two sets of timestamp logits that must agree to the dtype's rounding (the narrowed head, the narrowed last
layer): the same values within a fraction of the largest logit, and the same class wherever the top two are
clearly apart."""
from __future__ import annotations

import torch

# Largest difference allowed, as a fraction of the largest logit: float32's rounding after a few thousand
# products, bfloat16's own rounding step (2^-7).
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2.0**-7}


def assert_same_logits(full: torch.Tensor, rows: torch.Tensor, dtype: torch.dtype) -> None:
    scale = full.float().abs().max().item()
    assert rows.shape == full.shape
    assert (rows.float() - full.float()).abs().max().item() <= TOLERANCE[dtype] * scale
    # The class read off each row is the same wherever the top two are further apart than the tolerance.
    top2 = full.float().topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 2 * TOLERANCE[dtype] * scale
    assert torch.equal(rows.argmax(-1)[clear], full.argmax(-1)[clear])
