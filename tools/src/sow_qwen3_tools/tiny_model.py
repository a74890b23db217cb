#!/usr/bin/env python3
"""Write a random-weight Qwen3-ForcedAligner checkpoint in the real file layout.

The checkpoint has the real architecture (``qwen3_asr`` with a
``qwen3_forced_aligner`` thinker and its 5000-class timestamp head) and the
real files (``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
``tokenizer_config.json``, ``tokenizer.json``), so it loads through the real
``qwen_asr.Qwen3ForcedAligner.from_pretrained``. Its weights are random, so the
timestamps it produces are meaningless; they are, however, deterministic and
*informative*: they vary with the audio and with the text, and fall inside a
few seconds, so parity tests against it can fail.

Presets:
  tiny  (default) 2 layers, 64 wide; a few MB; aligns in tens of milliseconds.
  real  the published sizes (24-layer encoder, 28-layer decoder, 1024 wide,
        vocabulary 152064) with the same small tokenizer; for benchmarks.

Usage: make_tiny_model.py OUT_DIR [--preset tiny|real] [--dtype float32|bfloat16]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from sow_qwen3_contract.tensors import SAMPLE_RATE

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_start|>",
    "<|audio_end|>",
    "<|audio_pad|>",
    "<timestamp>",
]
SUPPORTED_LANGUAGES = [
    "Chinese", "English", "Cantonese", "French", "German", "Italian",
    "Japanese", "Korean", "Portuguese", "Russian", "Spanish",
]
# Timestamps of the demo checkpoint fall in the first INFORMATIVE_CLASSES
# 80 ms steps of the head (3.2 s), so that short test clips see times that
# differ from unit to unit instead of all clamping to the clip's end.
INFORMATIVE_CLASSES = 40
# Written into every checkpoint made here, so that tools can say its timestamps mean nothing.
MARKER = "RANDOM_WEIGHTS.txt"
MARKER_TEXT = ("Random weights written by scripts/make_tiny_model.py (preset {preset}): the timestamps this "
               "checkpoint produces are meaningless. For real timings run scripts/download_model.py.\n")
# The tiny tokenizer.json is tens of KB; Qwen's real tokenizer is about 11 MB.
TINY_TOKENIZER_BYTES = 1_000_000
# A few lines of text in the languages we serve, to train the tiny tokenizer on.
CORPUS = """
奇异恩典 何等甘甜 我罪已得赦免
前我失丧 今被寻回 瞎眼今得看见
如鹿切慕溪水 我的心切慕你
你是我的力量 你是我的盾牌
主耶和华是我的牧者 我必不致缺乏
哈利路亚 赞美主 荣耀归于至高神
天父世界 万物都是祢所造 我们一同来敬拜
Amazing grace how sweet the sound that saved a wretch like me
I once was lost but now am found was blind but now I see
Holy holy holy Lord God Almighty early in the morning
Alleluia praise the Lord sing to the Lord a new song
0123456789 Hallelujah Amen
"""

PRESETS = {
    "tiny": {
        "audio": {"encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
                  "d_model": 64, "downsample_hidden_size": 16},
        "text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                 "rope_scaling": {"rope_type": "default", "mrope_section": [2, 3, 3],
                                  "interleaved": True, "mrope_interleaved": True}},
        "vocab_size": None,  # the tokenizer's size
    },
    "real": {
        "audio": {"encoder_layers": 24, "encoder_attention_heads": 16, "encoder_ffn_dim": 4096,
                  "d_model": 1024, "downsample_hidden_size": 480},
        "text": {"hidden_size": 1024, "intermediate_size": 3072, "num_hidden_layers": 28,
                 "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128,
                 "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20],
                                  "interleaved": True, "mrope_interleaved": True}},
        "vocab_size": 152064,
    },
}


def build_tokenizer(out_dir: Path):
    """Train a byte-level BPE tokenizer on CORPUS and save it as a Qwen2 tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS.strip().splitlines() * 4, trainer=trainer)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=SPECIAL_TOKENS,
        extra_special_tokens={
            "audio_token": "<|audio_pad|>",
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
        },
        model_max_length=131072,
    )
    tokenizer.save_pretrained(out_dir)
    return tokenizer


def build_config(tokenizer, preset: dict):
    from qwen_asr.core.transformers_backend import Qwen3ASRConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab_size = preset["vocab_size"] or len(tokenizer)
    audio = {"num_mel_bins": 128, "max_source_positions": 1500, "n_window": 50,
             "n_window_infer": 800, "scale_embedding": False,
             "output_dim": preset["text"]["hidden_size"], **preset["audio"]}
    text = {"vocab_size": vocab_size, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
            "max_position_embeddings": 65536, "tie_word_embeddings": False, **preset["text"]}
    thinker = {
        "model_type": "qwen3_forced_aligner",
        "classify_num": 5000,
        "audio_config": audio,
        "text_config": text,
        "audio_token_id": ids["<|audio_pad|>"],
        "audio_start_token_id": ids["<|audio_start|>"],
        "audio_end_token_id": ids["<|audio_end|>"],
        "initializer_range": 0.02,
    }
    config = Qwen3ASRConfig(
        thinker_config=thinker,
        support_languages=SUPPORTED_LANGUAGES,
        timestamp_token_id=ids["<timestamp>"],
        timestamp_segment_time=80,
        pad_token_id=ids["<|endoftext|>"],
    )
    # Qwen3ASRThinkerConfig.__init__ resets model_type to its class default;
    # the aligner head is built only when it names the forced aligner.
    config.thinker_config.model_type = "qwen3_forced_aligner"
    config.thinker_config.classify_num = 5000
    return config


def calibration_audio(seconds: float = 8.0) -> np.ndarray:
    """A deterministic 16 kHz test signal: a rising tone over light noise."""
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t)
    noise = np.random.default_rng(1).normal(0.0, 0.05, t.size)
    return (tone + noise).astype(np.float32)


def make_informative(model, processor) -> None:
    """Reshape random weights so the tiny model's timestamps carry information.

    With stock random initialisation every ``<timestamp>`` position has nearly
    the same hidden state, so every unit gets the same time, and the 5000-class
    head puts it far past a short clip: after clamping, a server that never ran
    the model would pass a parity test. Instead we
      1. widen the weights, so hidden states depend on the audio and the text;
      2. fit, on fixed calibration inputs, a linear read-out s(h) of the final
         hidden state that tracks the timestamp's place in the text (two
         classes per unit, the end one class after the start);
      3. make the head's first INFORMATIVE_CLASSES rows score class k as
         2k*s(h) - k^2, whose argmax is the class nearest to s(h); the other
         rows stay zero, so times fall within a few seconds.
    Times then grow along the text, differ between a unit's start and end, and
    change with the audio, which is what parity tests need.
    """
    import torch
    from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor

    thinker = model.thinker
    splitter = Qwen3ForceAlignProcessor()
    lines = CORPUS.strip().splitlines()
    calibration = [(CORPUS, 8.0), ("\n".join(lines[0:5]), 5.0), ("\n".join(lines[7:10]), 4.0)]
    with torch.no_grad():
        for name, param in thinker.named_parameters():
            if param.dim() >= 2 and "lm_head" not in name:
                param.mul_(4.0)
        hidden, targets = [], []
        for text, seconds in calibration:
            _, prompt = splitter.encode_timestamp(text, "Chinese")
            inputs = processor(text=[prompt], audio=[calibration_audio(seconds)], return_tensors="pt", padding=True)
            captured = {}
            hook = thinker.lm_head.register_forward_hook(lambda _m, args, _o: captured.setdefault("h", args[0]))
            thinker(**inputs, use_cache=False)
            hook.remove()
            states = captured["h"][0][inputs["input_ids"][0] == model.config.timestamp_token_id]
            place = torch.arange(states.shape[0])
            hidden.append(states)
            targets.append((2 * (place // 2) + place % 2).float())
        states, target = torch.cat(hidden), torch.cat(targets)
        design = torch.cat([states, torch.ones(states.shape[0], 1)], dim=1)
        solution = torch.linalg.solve(design.T @ design + 1e-3 * torch.eye(design.shape[1]), design.T @ target)
        weights, bias = solution[:-1], solution[-1]
        # No bias in the head: constants ride on the mean hidden state (mean . h ~ |mean|^2).
        mean = states.mean(0)
        constant = mean / (mean @ mean)
        k = torch.arange(INFORMATIVE_CLASSES, dtype=torch.float32)[:, None]
        head = thinker.lm_head.weight
        head.zero_()
        head[:INFORMATIVE_CLASSES] = 2 * k * (weights + bias * constant) - k**2 * constant


def patch_config(out_dir: Path) -> None:
    """Undo save_pretrained's rename of the thinker's model_type (see module doc)."""
    path = out_dir / "config.json"
    data = json.loads(path.read_text())
    data["thinker_config"]["model_type"] = "qwen3_forced_aligner"
    data["thinker_config"]["classify_num"] = 5000
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_checkpoint(out_dir: Path, preset_name: str = "tiny", dtype: str = "float32") -> Path:
    """Build, save and verify the checkpoint; return OUT_DIR."""
    import torch
    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration, Qwen3ASRProcessor
    from transformers import WhisperFeatureExtractor

    preset = PRESETS[preset_name]
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    tokenizer = build_tokenizer(out_dir)
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=SAMPLE_RATE, hop_length=160,
                                       n_fft=400, chunk_length=30)
    features.save_pretrained(out_dir)
    config = build_config(tokenizer, preset)
    model = Qwen3ASRForConditionalGeneration(config).eval()
    if preset_name == "tiny":
        make_informative(model, Qwen3ASRProcessor(features, tokenizer))
    model.to(getattr(torch, dtype)).save_pretrained(out_dir, safe_serialization=True)
    patch_config(out_dir)
    for stray in ("generation_config.json",):
        (out_dir / stray).unlink(missing_ok=True)
    (out_dir / MARKER).write_text(MARKER_TEXT.format(preset=preset_name))
    honour_umask(out_dir)
    return out_dir


def is_random_weight_checkpoint(path: Path) -> bool:
    """Whether the checkpoint in ``path`` was made by this script: it has MARKER, or (made before the
    marker existed) the tiny tokenizer."""
    tokenizer = path / "tokenizer.json"
    return (path / MARKER).is_file() or (tokenizer.is_file() and tokenizer.stat().st_size < TINY_TOKENIZER_BYTES)


def honour_umask(out_dir: Path) -> None:
    """Give every file the mode the umask allows, as any newly created file gets.

    safetensors writes the weights through a private temporary file (mode
    0600), which a container's non-root user could not read.
    """
    umask = os.umask(0)
    os.umask(umask)
    for path in out_dir.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = parser.parse_args(argv)
    started = time.monotonic()
    write_checkpoint(args.out_dir, args.preset, args.dtype)
    size = sum(p.stat().st_size for p in args.out_dir.iterdir() if p.is_file())
    print(f"wrote {args.preset} random-weight checkpoint to {args.out_dir} "
          f"({size / 1e6:.1f} MB, {time.monotonic() - started:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
