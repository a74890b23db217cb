"""The timestamp head applied only where it is read.

Qwen3-ForcedAligner's ``lm_head`` maps every token's final hidden state to
``classify_num`` (5000) timestamp classes, but only the ``<timestamp>``
tokens' classes are used: about a sixth of a song's tokens (1,000 of 5,849
for a 300 s song). ``TimestampHead`` replaces the thinker's ``lm_head`` and,
inside ``at(positions)``, applies the same linear layer to those rows only.
Each row's logits are the same dot products as before; only the matrix
multiply's blocking differs, so they agree to float rounding (float32: within
1e-5 of the largest logit; bfloat16: its own rounding step, 2^-7 of it;
tests/core/test_timestamp_head.py). Outside ``at`` it is the plain head.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class TimestampHead(torch.nn.Module):
    """``head`` over (batch, tokens, hidden) states, restricted to ``positions`` while ``at`` is active."""

    def __init__(self, head: torch.nn.Linear) -> None:
        super().__init__()
        self.head = head
        self.positions: torch.Tensor | None = None
        # Set within ``at`` by a last decoder layer that returned the positions' rows only (``last_layer``).
        self.narrowed = False

    @contextmanager
    def at(self, positions: torch.Tensor) -> Iterator[None]:
        """Within the block, calls return logits of shape (batch, positions.sum(), classes) for a boolean
        ``positions`` over the tokens (1-D), or (1, positions.sum(), classes) for one over the batch's rows and
        tokens (2-D: row after row, each in token order). Not reentrant: one forward pass at a time."""
        self.positions, self.narrowed = positions, False
        try:
            yield
        finally:
            self.positions, self.narrowed = None, False

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.positions is None or self.narrowed:
            return self.head(hidden_states)
        if self.positions.dim() == 2:
            return self.head(hidden_states[self.positions])[None]
        return self.head(hidden_states[:, self.positions])
