"""Where one alignment's forward pass spends its time, and how many FLOPs each part does.

Components of Qwen3-ForcedAligner's thinker:
  conv front end   the audio encoder's three stride-2 3x3 convolutions and their
                   output projection (``conv_out``), over one-second chunks;
  encoder layers   the audio encoder's transformer layers and output projections
                   (attention over 8 s windows, or the whole clip when not windowed);
  decoder layers   the text decoder's layers (causal attention over every token;
                   the engine's last layer at the timestamp tokens only, its keys
                   and values over every token: ``sow_aligner.last_layer``);
  timestamp head   ``lm_head``: hidden size -> classify_num classes, at every
                   token (stock) or only at the timestamp tokens;
  other            the rest of the forward pass (embeddings, rope index, norms).

``component_flops`` counts multiply-adds as 2 FLOPs for the matmuls,
convolutions and attention (elementwise work is left out); its counts agree
with ``torch.utils.flop_counter`` on a small model (tests/test_forward_profile.py).
``ComponentTimer`` times the same components with forward hooks; on CPU every
op is synchronous, so the hooks' clock readings are the components' times.
The conv front end runs from the audio tower's call to ``conv_out``'s return
(the mel chunks cut and padded, the convolutions and their GELUs, which
qwen-asr runs ``conv_chunksize`` chunks at a time, and ``conv_out``),
whichever forward the tower runs: qwen-asr's, or the engine's with each GELU
inside its convolution (``sow_aligner.conv_front_end``), which calls no
convolution module.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

COMPONENTS = ("conv front end", "encoder layers", "decoder layers", "timestamp head", "other")


@dataclass(frozen=True)
class ForwardShape:
    """What one forward pass works on."""

    mel_frames: int  # feature frames of the clip (100 per second)
    tokens: int  # prompt tokens, audio embeddings included
    window_lengths: tuple[int, ...]  # audio embeddings per attention window (one entry: full attention)
    head_rows: int  # rows the timestamp head is applied to
    # Positions of the tokens the last decoder layer's queries, attention and MLP run at (None: every token).
    last_layer_rows: tuple[int, ...] | None = None


def conv_size(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 convolution along one axis."""
    return (size - 1) // 2 + 1


def component_flops(config, shape: ForwardShape) -> dict[str, int]:
    """FLOPs per component (``COMPONENTS`` but "other") of one forward pass, attention included.

    ``config`` is the thinker config (``model.config.thinker_config``) or any
    object with its ``audio_config``, ``text_config`` and ``classify_num``.
    """
    audio, text = config.audio_config, config.text_config
    chunk = 2 * audio.n_window
    chunks = -(-shape.mel_frames // chunk)  # each chunk padded to ``chunk`` frames
    width = audio.downsample_hidden_size
    f1, t1 = conv_size(audio.num_mel_bins), conv_size(chunk)
    f2, t2 = conv_size(f1), conv_size(t1)
    f3, t3 = conv_size(f2), conv_size(t2)
    conv = 2 * 9 * width * (f1 * t1 + width * (f2 * t2 + f3 * t3)) + 2 * t3 * width * f3 * audio.d_model
    embeddings = sum(shape.window_lengths)
    d, ffn = audio.d_model, audio.encoder_ffn_dim
    encoder_linear = audio.encoder_layers * 2 * embeddings * (4 * d * d + 2 * d * ffn)
    encoder_out = 2 * embeddings * (d * d + d * audio.output_dim)
    h, n = text.hidden_size, shape.tokens
    q_dim = text.num_attention_heads * text.head_dim
    kv_dim = text.num_key_value_heads * text.head_dim
    key_value = 2 * h * 2 * kv_dim  # per token: the key and value projections
    rest = 2 * (h * 2 * q_dim + 3 * h * text.intermediate_size)  # per row: query, output projection, MLP
    last_rows = n if shape.last_layer_rows is None else len(shape.last_layer_rows)
    decoder_linear = text.num_hidden_layers * n * key_value + ((text.num_hidden_layers - 1) * n + last_rows) * rest
    attention = attention_flops(config, shape)
    return {
        "conv front end": chunks * conv,
        "encoder layers": encoder_linear + encoder_out + attention["encoder layers"],
        "decoder layers": decoder_linear + attention["decoder layers"],
        "timestamp head": 2 * shape.head_rows * h * config.classify_num,
    }


def attention_flops(config, shape: ForwardShape) -> dict[str, int]:
    """The attention kernels' share of ``component_flops``: scores and weighted sums.

    Encoder: within each span, every embedding with every other. Decoder:
    causal, each token with itself and those before it (in a narrowed last
    layer, each of its rows).
    """
    audio, text = config.audio_config, config.text_config
    q_dim = text.num_attention_heads * text.head_dim
    causal_pairs = shape.tokens * (shape.tokens + 1) // 2
    rows = shape.last_layer_rows
    last_pairs = causal_pairs if rows is None else sum(position + 1 for position in rows)
    return {
        "encoder layers": audio.encoder_layers * 4 * audio.d_model * sum(n * n for n in shape.window_lengths),
        "decoder layers": 4 * q_dim * ((text.num_hidden_layers - 1) * causal_pairs + last_pairs),
    }


class ComponentTimer:
    """Seconds per component of the forward passes made inside ``timing()``, summed over calls.

    A forward pass is a thinker call with its audio inside (stock qwen-asr),
    or an audio tower call and then a thinker call on the embeddings (the
    engine's ``EncodedSong``): the outermost of those calls are the pass's
    time, the components are within it, and "other" is the rest. ``inputs``
    holds the last pass's prompt tokens (the thinker's ``input_ids`` or
    ``inputs_embeds``) and mel frames (the audio tower's ``feature_lens``);
    ``last_layer_rows`` the positions its last decoder layer ran at when the
    engine narrowed it to the timestamp head's rows (``TimestampHead.narrowed``),
    else None.
    """

    def __init__(self, thinker, clock: Callable[[], float] = time.perf_counter) -> None:
        tower = thinker.audio_tower
        self.clock = clock
        # (first module, last module): a span runs from the first's call to the last's return, once per call.
        self.spans = {
            "audio tower": (tower, tower),
            "conv front end": (tower, tower.conv_out),
            "decoder layers": (thinker.model.layers[0], thinker.model.layers[-1]),
            "timestamp head": (thinker.lm_head, thinker.lm_head),
        }
        self._thinker, self._tower = thinker, tower
        self.seconds = {name: 0.0 for name in (*self.spans, "passes")}
        self.inputs: dict[str, int] = {}  # tokens and mel_frames of the last pass
        self.last_layer_rows: tuple[int, ...] | None = None

    @contextmanager
    def timing(self) -> Iterator[ComponentTimer]:
        handles, started = [], {}
        for name, (first, last) in self.spans.items():
            def begin(*_, name=name):
                started[name] = self.clock()

            def end(*_, name=name):
                self.seconds[name] += self.clock() - started.pop(name)

            handles += [first.register_forward_pre_hook(begin), last.register_forward_hook(end)]
        depth = [0]  # calls of the thinker or the audio tower under way

        def enter(module, _args, kwargs):
            if depth[0] == 0:
                started["passes"] = self.clock()
            depth[0] += 1
            if module is self._tower:
                self.inputs["mel_frames"] = int(kwargs["feature_lens"].sum())
            else:
                prompt = kwargs.get("input_ids")
                self.inputs["tokens"] = int((prompt if prompt is not None else kwargs["inputs_embeds"]).shape[1])

        def leave(*_):
            depth[0] -= 1
            if depth[0] == 0:
                self.seconds["passes"] += self.clock() - started.pop("passes")

        def head_called(head, _args):
            narrowed = getattr(head, "narrowed", False)
            self.last_layer_rows = tuple(head.positions.nonzero()[:, 0].tolist()) if narrowed else None

        for module in (self._thinker, self._tower):
            handles += [module.register_forward_pre_hook(enter, with_kwargs=True), module.register_forward_hook(leave)]
        handles.append(self._thinker.lm_head.register_forward_pre_hook(head_called))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def components(self) -> dict[str, float]:
        """Seconds per entry of COMPONENTS (encoder layers = audio tower less its conv front end)."""
        s = self.seconds
        parts = {
            "conv front end": s["conv front end"],
            "encoder layers": s["audio tower"] - s["conv front end"],
            "decoder layers": s["decoder layers"],
            "timestamp head": s["timestamp head"],
        }
        return {**parts, "other": s["passes"] - sum(parts.values())}


def forward_shape(config, mel_frames: int, tokens: int, head_rows: int, windowed: bool,
                  last_layer_rows: tuple[int, ...] | None = None) -> ForwardShape:
    """The ForwardShape of a clip of ``mel_frames`` frames in a prompt of ``tokens`` tokens.

    As qwen-asr's encoder computes them: 13 embeddings per full 100-frame chunk
    (plus the last chunk's), attention windows of ``n_window_infer`` frames
    (104 embeddings), the last one shorter; one span when not ``windowed``.
    """
    audio = config.audio_config
    chunk = 2 * audio.n_window
    per_chunk = conv_size(conv_size(conv_size(chunk)))
    full_chunks, rest = divmod(mel_frames, chunk)
    embeddings = full_chunks * per_chunk + (conv_size(conv_size(conv_size(rest))) if rest else 0)
    window = per_chunk * (audio.n_window_infer // chunk)
    if windowed:
        whole, tail = divmod(embeddings, window)
        spans = (window,) * whole + ((tail,) if tail else ())
    else:
        spans = (embeddings,)
    return ForwardShape(mel_frames, tokens, spans, head_rows, last_layer_rows)


def achieved(flops: dict[str, int], seconds: dict[str, float]) -> dict[str, float]:
    """GFLOP/s per component that has both a FLOP count and a time, plus "forward" over all of them."""
    rates = {name: flops[name] / seconds[name] / 1e9 for name in flops if seconds.get(name, 0) > 0}
    total_seconds = sum(seconds.values())
    rates["forward"] = sum(flops.values()) / total_seconds / 1e9 if total_seconds > 0 else 0.0
    return rates


def shares(seconds: dict[str, float], names: Sequence[str] = COMPONENTS) -> dict[str, float]:
    """Each component's fraction of the forward pass's time."""
    total = sum(seconds[name] for name in names)
    return {name: seconds[name] / total for name in names}
