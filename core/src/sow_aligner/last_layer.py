"""The text decoder's last layer computed only at the rows the timestamp head reads.

The forced aligner reads its final hidden states at the ``<timestamp>``
tokens alone (``timestamp_head``): about a fifth of a song's tokens (600 of
2,740 for a 120 s song). Every layer before the last must still run over
every token, since the last one's keys and values come from all of them; but
the last layer's own output is read only at those rows. ``narrow_last_layer``
puts one thinker's last decoder layer inside a ``LastLayerAtRows``: while
its ``TimestampHead`` is inside ``at`` for one prompt (1-D positions, no
padding mask, no key-value cache), it computes keys and values over every
token and everything else (the queries, attention, output projection,
residuals, MLP) at the head's rows only, returns those rows, and tells the
head so (``TimestampHead.narrowed``). Any other call (batched prompts, a
padding mask, a cache, outside ``at``) runs the layer itself, compiled or
not (``decoder_compile``); the narrowed form runs eager.

Each row is the same arithmetic as in the full layer: the norms, rotary
embedding and MLP work row by row, the projections are the same matrix
products over fewer rows, and each query attends to the keys up to its own
position (an explicit mask instead of the causal kernel's). Only the
blocking of the products and of attention may differ, so the logits agree to
the dtype's rounding and the timestamp classes stay the same
(tests/core/test_last_layer.py). On the 300 s bench song the last layer then
does 28 % of its FLOPs, in 42 % of the whole layer's time (bfloat16 on an
Intel Xeon with AMX; ``scripts/bench_kernels.py`` part (d)).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .timestamp_head import TimestampHead


def rotated(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(batch, heads, tokens, head size) ``states`` turned by the rotary embedding ``cos``, ``sin`` (batch, tokens,
    head size): bit for bit qwen-asr's ``apply_rotary_pos_emb``, which turns a query and a key at the same positions
    (here each is turned alone: the narrowed layer's queries sit at fewer positions than its keys).

    qwen-asr computes ``states * cos + rotate_half(states) * sin``, ``rotate_half`` being the halves swapped with
    the first negated. This takes the same products and sums in the same dtype, half by half: the first half is
    ``x1 * cos1 - x2 * sin1`` (rounding is symmetric, so ``-(x2 * sin1)`` is ``(-x2) * sin1`` exactly), the second
    ``x2 * cos2 + x1 * sin2``. Compiled (``decoder_compile``), inductor then fuses the query and key norms and this
    into one loop per tensor; qwen-asr's form made it write the swapped halves to memory and read them back in
    a second loop, which took twice as long (tests/core/test_last_layer.py holds the two equal).
    """
    half = states.shape[-1] // 2
    first, second = states[..., :half], states[..., half:]
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return torch.cat((first * cos[..., :half] - second * sin[..., :half],
                      second * cos[..., half:] + first * sin[..., half:]), dim=-1)


def narrowed_layer(layer: torch.nn.Module, hidden_states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   rows: torch.Tensor) -> torch.Tensor:
    """``layer``'s output at ``rows`` (1-D token indices, ascending) of one unpadded prompt ``hidden_states``
    (1, tokens, hidden), under causal attention with the rotary embedding ``cos``, ``sin`` (1, tokens, head size):
    (1, len(rows), hidden)."""
    attention = layer.self_attn
    tokens, head_size = hidden_states.shape[1], attention.head_dim
    normed = layer.input_layernorm(hidden_states)
    read = normed[:, rows]
    query = attention.q_norm(attention.q_proj(read).view(1, rows.shape[0], -1, head_size)).transpose(1, 2)
    key = attention.k_norm(attention.k_proj(normed).view(1, tokens, -1, head_size)).transpose(1, 2)
    value = attention.v_proj(normed).view(1, tokens, -1, head_size).transpose(1, 2)
    query, key = rotated(query, cos[:, rows], sin[:, rows]), rotated(key, cos, sin)
    # Query at position p sees the keys at 0..p, as under the causal mask.
    visible = torch.arange(tokens, device=rows.device)[None, :] <= rows[:, None]
    attended = F.scaled_dot_product_attention(
        query.contiguous(), key.contiguous(), value.contiguous(), attn_mask=visible, scale=attention.scaling,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    hidden = hidden_states[:, rows] + attention.o_proj(attended.transpose(1, 2).reshape(1, rows.shape[0], -1))
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden))


class LastLayerAtRows(torch.nn.Module):
    """The last decoder ``layer`` of a thinker whose ``head`` is a ``TimestampHead``: while the head is inside
    ``at`` for one unpadded prompt, ``narrowed_layer`` at the head's rows, and the head told so; otherwise
    ``layer`` itself."""

    def __init__(self, layer: torch.nn.Module, head: TimestampHead) -> None:
        super().__init__()
        self.layer = layer
        self._head = [head]  # in a list: the thinker holds the head, this must not register it a second time

    def forward(self, hidden_states: torch.Tensor, *args, attention_mask: torch.Tensor | None = None,
                position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None, **kwargs) -> torch.Tensor:
        head = self._head[0]
        positions = head.positions
        if (positions is None or positions.dim() != 1 or attention_mask is not None or position_embeddings is None
                or kwargs.get("past_key_values") is not None):
            return self.layer(hidden_states, *args, attention_mask=attention_mask,
                              position_embeddings=position_embeddings, **kwargs)
        head.narrowed = True
        return narrowed_layer(self.layer, hidden_states, *position_embeddings, positions.nonzero()[:, 0])


def narrow_last_layer(thinker: torch.nn.Module) -> None:
    """Put ``thinker``'s last decoder layer inside a ``LastLayerAtRows`` with its head; harmless when done
    already. Raises TypeError when the thinker's ``lm_head`` is not a ``TimestampHead``."""
    head = thinker.lm_head
    if not isinstance(head, TimestampHead):
        raise TypeError(f"the thinker's lm_head is a {type(head).__name__}, not a TimestampHead")
    layers = thinker.model.layers
    if not isinstance(layers[-1], LastLayerAtRows):
        layers[-1] = LastLayerAtRows(layers[-1], head)


def decoder_layers(thinker: torch.nn.Module) -> list[torch.nn.Module]:
    """The text decoder's own layers of a ``Qwen3ASRThinkerForConditionalGeneration``, the last one outside its
    ``LastLayerAtRows`` if it has one."""
    return [layer.layer if isinstance(layer, LastLayerAtRows) else layer for layer in thinker.model.layers]
