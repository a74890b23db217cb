#!/usr/bin/env python3
"""Time the kernels sow_aligner replaces, against qwen-asr's own code.

    bench_kernels.py [--model-dir DIR] [--quick]

(a) ``fix_timestamp``: qwen-asr's O(n²) repair vs ``sow_aligner.timestamps``
    at n = 1000, 2000, 4000 timestamps, on model-like input (rising 80 ms
    steps with outliers); checks that both give the same output.
(b) The audio encoder forward on the real-size architecture (random weights,
    built once into DIR with ``make_tiny_model.py DIR --preset real --dtype
    bfloat16`` when missing), in bfloat16 and float32, for 30, 120 and 300 s
    of audio: stock qwen-asr (full attention: what sdpa does on CPU), the
    same with a block-diagonal window mask (sdpa with ``attn_mask``), and
    ``enable_windowed_attention`` (sdpa per window). Also prints how far the
    windowed output lies from the masked one (should be rounding) and from
    stock (the real change of windowing).
(c) The audio encoder as the engine runs it (windowed; convolutions
    channels-last in bfloat16) for each ``conv_chunksize``: how many one-second
    chunks the convolution front end takes at once (qwen-asr's 500, and the
    engine's ``CONV_CHUNKS`` among others), 120 s of audio, with whether the
    output is bit-identical to 500's.
(d) The text decoder's last layer as the engine runs it (config.pbtxt's
    defaults: compiled in bfloat16 where ``compile=auto`` compiles), on its
    own input for the 120 and 300 s bench songs: the whole layer against
    ``last_layer.narrowed_layer`` at the timestamp tokens, with how far the
    narrowed rows lie from the whole layer's (against its largest value: in
    bfloat16, a value of 8 to 16 rounds in steps of 0.0625).

(e) The text decoder's causal attention on its own input (the first layer's
    query, key and value for the 120 and 300 s bench songs, in bfloat16):
    PyTorch's flash kernel (sdpa on contiguous heads, as the compiled layers
    call it) against ``amx_attention`` (on the projections' layout, as it gets
    them), with each one's largest error against attention in float64; then
    each song aligned with either attention (the rest eager): how many unit
    times (timestamp slots) moved, and the largest confidence difference.
    Only on CPUs with AMX.

``--quick`` (under a minute): n = 1000, 2000 and 30 s in bfloat16 only; no (c), (d), (e).
Encoder times are the best of 2 runs (1 with --quick) after one warm-up
call per encoder, in seconds, with torch's default threads. Times on shared
machines vary by up to 50% from run to run, so compare ratios within one run.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from qwen_asr import Qwen3ForcedAligner
from qwen_asr.core.transformers_backend.modeling_qwen3_asr import _get_feat_extract_output_lengths
from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from sow_aligner import amx_attention
from sow_aligner.decoder_compile import CONTIGUOUS_SDPA, uncompile_layers
from sow_aligner.encoder_windows import enable_windowed_attention
from sow_aligner.engine import CONV_CHUNKS, channels_last_convolutions
from sow_aligner.last_layer import narrowed_layer
from sow_aligner.timestamps import fix_timestamp
from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_tools.bench import LANGUAGE, load_engine
from sow_qwen3_tools.songs import SONGS, song_data
from sow_qwen3_tools.tiny_model import write_checkpoint

DEFAULT_MODEL_DIR = Path("/tmp/sow-real-bf16")
WARM_UP_SECONDS = 10  # two windows: warms the windowed path too
CAPTURE = "bench_kernels_capture"  # part (e)'s attention: the engine's, recording the first layer's arguments


def best_time(run: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``run``, and the last result."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def model_like_timestamps(n: int, seed: int) -> np.ndarray:
    """Rising 80 ms steps with 10% outliers and a collapsed run, as the head emits them."""
    rng = np.random.default_rng(seed)
    values = np.cumsum(rng.integers(0, 4, n)) * 80.0
    outliers = rng.choice(n, size=n // 10, replace=False)
    values[outliers] = rng.integers(0, 5000, n // 10) * 80.0
    values[n // 2:n // 2 + 10] = 0.0
    return values


def bench_fix_timestamp(sizes: list[int]) -> None:
    original = Qwen3ForceAlignProcessor()
    print("## fix_timestamp: qwen-asr O(n²) vs sow_aligner O(n log n)\n")
    print("| n | qwen-asr (ms) | sow_aligner (ms) | speed-up | same output |")
    print("|---|---|---|---|---|")
    for n in sizes:
        values = model_like_timestamps(n, seed=n)
        old, old_out = best_time(lambda: original.fix_timestamp(values), repeats=3)
        new, new_out = best_time(lambda: fix_timestamp(values), repeats=20)
        print(f"| {n} | {old * 1e3:.1f} | {new * 1e3:.2f} | {old / new:.0f}x | {old_out == new_out} |")
    print()


def test_audio(seconds: float) -> np.ndarray:
    """A deterministic 16 kHz signal: a gated rising tone over light noise."""
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    gate = np.sin(2 * np.pi * t / 7) > 0
    tone = 0.3 * np.sin(2 * np.pi * (200 + 20 * t) * t) * gate
    noise = np.random.default_rng(0).normal(0.0, 0.02, t.size)
    return (tone + noise).astype(np.float32)


def with_window_mask(encoder: torch.nn.Module) -> torch.nn.Module:
    """The comparison point: ``encoder``'s attention given qwen-asr's own block-diagonal mask.

    Patches this instance only. Each layer gets the mask
    ``Qwen3ASRAudioEncoder._prepare_attention_mask`` builds (0 within a
    window, the dtype's minimum across windows); it is built once per input.
    """
    cache: dict = {}

    def masked(stock_forward, hidden_states, cu_seqlens, **kwargs):
        key = (tuple(cu_seqlens.tolist()), hidden_states.dtype)
        if key not in cache:
            cache.clear()
            cache[key] = encoder._prepare_attention_mask(hidden_states, cu_seqlens)
        return stock_forward(hidden_states, cu_seqlens=cu_seqlens, attention_mask=cache[key])

    for layer in encoder.layers:
        layer.self_attn.forward = partial(masked, layer.self_attn.forward)
    return encoder


def bench_encoder(model_dir: Path, dtypes: list[str], seconds: list[int], repeats: int) -> None:
    if not (model_dir / "model.safetensors").is_file():
        print(f"building the real-size random-weight checkpoint in {model_dir} ...", file=sys.stderr)
        write_checkpoint(model_dir, "real", "bfloat16")
    aligner = Qwen3ForcedAligner.from_pretrained(str(model_dir), dtype=torch.bfloat16, device_map="cpu")
    extractor = aligner.processor.feature_extractor
    base = aligner.model.thinker.audio_tower.eval()
    del aligner
    chunk = 2 * base.config.n_window  # mel frames per CNN chunk
    window = int(_get_feat_extract_output_lengths(torch.tensor(chunk))) * (base.config.n_window_infer // chunk)
    print(f"## Audio encoder forward (real-size architecture, random weights, "
          f"{base.config._attn_implementation}, {torch.get_num_threads()} threads)\n")
    print("| dtype | audio | embeddings | windows | stock full (s) | mask (s) | windowed (s) "
          "| stock / windowed | mask / windowed | max abs windowed - mask | max abs windowed - stock "
          "| rel. L2 windowed - stock |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    variants = ("stock", "mask", "windowed")
    for dtype in dtypes:
        stock = copy.deepcopy(base).to(getattr(torch, dtype))
        encoders = {"stock": stock, "mask": with_window_mask(copy.deepcopy(stock)), "windowed": copy.deepcopy(stock)}
        enable_windowed_attention(encoders["windowed"])
        with torch.inference_mode():
            warm_up = encoder_input(extractor, WARM_UP_SECONDS, dtype)
            for encoder in encoders.values():
                encoder(*warm_up)
            for length in seconds:
                mel, lens = encoder_input(extractor, length, dtype)
                times, outputs = {}, {}
                for name in variants:
                    times[name], result = best_time(lambda: encoders[name](mel, feature_lens=lens), repeats)  # noqa: F821
                    outputs[name] = result.last_hidden_state.float()
                win, full, mask = outputs["windowed"], outputs["stock"], outputs["mask"]
                rel = ((win - full).norm() / full.norm()).item()
                print(f"| {dtype} | {length} s | {win.shape[0]} | {-(-win.shape[0] // window)} "
                      f"| {times['stock']:.2f} | {times['mask']:.2f} | {times['windowed']:.2f} "
                      f"| {times['stock'] / times['windowed']:.2f}x | {times['mask'] / times['windowed']:.2f}x "
                      f"| {(win - mask).abs().max().item():.2e} | {(win - full).abs().max().item():.2e} "
                      f"| {rel:.2e} |", flush=True)
        del stock, encoders
    print()


def bench_conv_chunks(model_dir: Path, dtypes: list[str], seconds: int, repeats: int) -> None:
    aligner = Qwen3ForcedAligner.from_pretrained(str(model_dir), dtype=torch.bfloat16, device_map="cpu")
    extractor, base = aligner.processor.feature_extractor, aligner.model.thinker.audio_tower.eval()
    del aligner
    sizes = sorted({500, 50, 8, CONV_CHUNKS, 4}, reverse=True)
    print(f"## Convolution chunks at once (audio encoder as the engine runs it, {seconds} s of audio, "
          f"{torch.get_num_threads()} threads; the engine's CONV_CHUNKS: {CONV_CHUNKS})\n")
    print("| dtype | " + " | ".join(f"{size} chunks (s)" for size in sizes) + " | bit-identical to 500 |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for dtype in dtypes:
        encoder = copy.deepcopy(base).to(getattr(torch, dtype))
        enable_windowed_attention(encoder)
        if dtype == "bfloat16":
            channels_last_convolutions(encoder)
        times, outputs = {}, {}
        with torch.inference_mode():
            encoder(*encoder_input(extractor, WARM_UP_SECONDS, dtype))
            mel, lens = encoder_input(extractor, seconds, dtype)
            for size in sizes:
                encoder.conv_chunksize = size
                times[size], result = best_time(lambda: encoder(mel, feature_lens=lens), repeats)  # noqa: F821
                outputs[size] = result.last_hidden_state
        same = all(torch.equal(outputs[size], outputs[500]) for size in sizes)
        print(f"| {dtype} | " + " | ".join(f"{times[size]:.2f}" for size in sizes) + f" | {'yes' if same else 'no'} |",
              flush=True)
        del encoder
    print()


def bench_last_layer(model_dir: Path, songs: list[str], repeats: int) -> None:
    engine, _, _ = load_engine(model_dir)
    thinker = engine.aligner.model.thinker
    last = thinker.model.layers[-1]
    seen: dict = {}

    def capture(_module, args, kwargs) -> None:
        seen.update(hidden=args[0], rotary=kwargs["position_embeddings"],
                    rows=thinker.lm_head.positions.nonzero()[:, 0])

    print(f"## The decoder's last layer, whole and at the timestamp tokens ({engine.dtype_choice.dtype}, "
          f"{torch.get_num_threads()} threads, the engine's own input)\n")
    print("| song | tokens | timestamp tokens | whole layer (ms) | at the timestamp tokens (ms) | whole / narrowed "
          "| max abs narrowed - whole | largest abs whole |")
    print("|---|---|---|---|---|---|---|---|")
    handle = last.register_forward_pre_hook(capture, with_kwargs=True)
    for key in songs:
        audio, lyrics = song_data(SONGS[key])
        engine.align(audio, lyrics.splitlines(), LANGUAGE)
        hidden, (cos, sin), rows = seen["hidden"], seen["rotary"], seen["rows"]
        with torch.inference_mode():
            whole = partial(last.layer, hidden, attention_mask=None, position_embeddings=(cos, sin))
            narrowed = partial(narrowed_layer, last.layer, hidden, cos, sin, rows)
            whole(), narrowed()  # warm-up
            whole_time, whole_out = best_time(whole, repeats)
            narrowed_time, narrowed_out = best_time(narrowed, repeats)
        reference = whole_out[:, rows].float()
        gap = (narrowed_out.float() - reference).abs().max().item()
        print(f"| {key} s | {hidden.shape[1]} | {rows.shape[0]} | {whole_time * 1e3:.1f} | {narrowed_time * 1e3:.1f} "
              f"| {whole_time / narrowed_time:.2f}x | {gap:.2e} | {reference.abs().max().item():.3g} |", flush=True)
    handle.remove()
    print()


def bench_attention(model_dir: Path, songs: list[str], repeats: int) -> None:
    if not amx_attention.cpu_has_amx():
        print("## The decoder's causal attention: skipped (this CPU has no AMX)\n")
        return
    engine, _, _ = load_engine(model_dir)
    thinker = engine.aligner.model.thinker
    uncompile_layers(thinker)  # eager: a Python hook sees the attention's arguments
    first = thinker.model.layers[0].self_attn
    seen: dict = {}

    def capture(module, query, key, value, attention_mask, **kwargs):
        if module is first:
            seen.update(query=query, key=key, value=value, scale=kwargs.get("scaling") or module.scaling)
        return amx_attention.amx_attention(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(CAPTURE, capture)
    AttentionMaskInterface.register(CAPTURE, sdpa_mask)
    print(f"## The decoder's causal attention, PyTorch's flash kernel and ours ({engine.dtype_choice.dtype}, "
          f"{torch.get_num_threads()} threads, the first layer's own input)\n")
    print("| song | tokens | heads / key heads | PyTorch (ms) | AMX kernel (ms) | PyTorch / kernel "
          "| max abs error PyTorch | max abs error kernel | largest abs output | slots moved | max confidence diff |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key in songs:
        audio, lyrics = song_data(SONGS[key])
        thinker.model.config._attn_implementation = CAPTURE
        kernels = engine.align(audio, lyrics.splitlines(), LANGUAGE)
        thinker.model.config._attn_implementation = CONTIGUOUS_SDPA
        pytorchs = engine.align(audio, lyrics.splitlines(), LANGUAGE)
        slots = list(zip(kernels.unit_start + kernels.unit_end, pytorchs.unit_start + pytorchs.unit_end))
        moved = sum(mine != theirs for mine, theirs in slots)
        confidence = max(abs(mine - theirs) for mine, theirs in zip(kernels.evidence.unit_confidence,
                                                                      pytorchs.evidence.unit_confidence))
        query, key_states, value, scale = seen["query"], seen["key"], seen["value"], seen["scale"]
        contiguous = [tensor.contiguous() for tensor in (query, key_states, value)]
        with torch.inference_mode():
            pytorch = partial(torch.nn.functional.scaled_dot_product_attention, *contiguous, is_causal=True,
                              enable_gqa=True, scale=scale)
            kernel = partial(amx_attention.causal_attention, query, key_states, value, scale)
            pytorch(), kernel()  # warm-up
            pytorch_time, pytorch_out = best_time(pytorch, repeats)
            kernel_time, kernel_out = best_time(kernel, repeats)
            group = query.shape[1] // key_states.shape[1]
            exact = torch.nn.functional.scaled_dot_product_attention(
                query.double(), key_states.double().repeat_interleave(group, 1),
                value.double().repeat_interleave(group, 1), is_causal=True, scale=scale).transpose(1, 2)
        errors = [(out.double() - exact).abs().max().item() for out in (pytorch_out.transpose(1, 2), kernel_out)]
        print(f"| {key} s | {query.shape[2]} | {query.shape[1]} / {key_states.shape[1]} | {pytorch_time * 1e3:.1f} "
              f"| {kernel_time * 1e3:.1f} | {pytorch_time / kernel_time:.2f}x | {errors[0]:.2e} | {errors[1]:.2e} "
              f"| {exact.abs().max().item():.3g} | {moved} of {len(slots)} | {confidence:.1e} |", flush=True)
    print()


def encoder_input(extractor, seconds: float, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(mel frames of ``seconds`` of test audio, their count): the audio encoder's arguments."""
    features = extractor(test_audio(seconds), sampling_rate=SAMPLE_RATE, padding=True, truncation=False,
                         return_attention_mask=True, return_tensors="pt")
    frames = int(features["attention_mask"].sum())
    return features["input_features"][0, :, :frames].to(getattr(torch, dtype)), torch.tensor([frames])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR,
                        help=f"real-size checkpoint, built here when missing (default {DEFAULT_MODEL_DIR})")
    parser.add_argument("--quick", action="store_true", help="fewer sizes: a run of under a minute")
    args = parser.parse_args(argv)
    if args.quick:
        bench_fix_timestamp([1000, 2000])
        bench_encoder(args.model_dir, ["bfloat16"], [30], repeats=1)
    else:
        bench_fix_timestamp([1000, 2000, 4000])
        bench_encoder(args.model_dir, ["bfloat16", "float32"], [30, 120, 300], repeats=2)
        bench_conv_chunks(args.model_dir, ["bfloat16", "float32"], 120, repeats=3)
        bench_last_layer(args.model_dir, ["120", "300"], repeats=5)
        bench_attention(args.model_dir, ["120", "300"], repeats=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
