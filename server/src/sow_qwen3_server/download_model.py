#!/usr/bin/env python3
"""Fetch the real Qwen3-ForcedAligner-0.6B weights and verify them.

    download_model.py [--dest DIR] [--source huggingface|modelscope]

Downloads from Hugging Face (``Qwen/Qwen3-ForcedAligner-0.6B``) or ModelScope
(needs ``pip install modelscope``) into DIR (default
/models/qwen3-forced-aligner, the path the server reads), then checks that the
directory holds a loadable forced-aligner checkpoint: the required files, a
forced-aligner config.json and a safetensors file whose timestamp head has the
config's class count. With ``--verify-only`` it checks DIR without
downloading. Exits 1 with a plain message when the network or a file is
missing. The server itself never downloads anything.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sow_qwen3_contract.checkpoint import HEAD_TENSOR, checkpoint_problem, parameter_count, tensor_shapes

REPO_ID = "Qwen/Qwen3-ForcedAligner-0.6B"
DEFAULT_DEST = "/models/qwen3-forced-aligner"
WANTED_FILES = [
    "config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json",
    "vocab.json", "merges.txt", "chat_template.json", "generation_config.json",
]


class VerifyError(RuntimeError):
    """The directory is not a usable checkpoint; the message says why."""


def download(dest: Path, source: str) -> None:
    """Fetch the checkpoint files into ``dest`` (raises on network failure)."""
    if source == "modelscope":
        try:
            from modelscope import snapshot_download
        except ImportError:
            raise VerifyError("ModelScope download needs the modelscope package: pip install modelscope") from None
        snapshot_download(REPO_ID, local_dir=str(dest))
        return
    os.environ["HF_HUB_OFFLINE"] = "0"
    from huggingface_hub import snapshot_download

    snapshot_download(REPO_ID, local_dir=str(dest), allow_patterns=WANTED_FILES)


def verify(dest: Path) -> str:
    """Check ``dest`` holds a Qwen3-ForcedAligner checkpoint (``sow_qwen3_contract.checkpoint``, the server's own
    check); return a one-line summary. Raises VerifyError naming the problem."""
    problem = checkpoint_problem(dest)
    if problem:
        raise VerifyError(problem)
    shapes = tensor_shapes(dest)
    parameters = parameter_count(shapes)
    return f"{dest}: {len(shapes)} tensors, {parameters / 1e6:.1f} M parameters, {shapes[HEAD_TENSOR][0]}-class timestamp head"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path(os.environ.get("SOW_QWEN3_MODEL_PATH", DEFAULT_DEST)))
    parser.add_argument("--source", choices=["huggingface", "modelscope"], default="huggingface")
    parser.add_argument("--verify-only", action="store_true", help="check DEST without downloading")
    args = parser.parse_args(argv)
    try:
        if not args.verify_only:
            args.dest.mkdir(parents=True, exist_ok=True)
            print(f"downloading {REPO_ID} from {args.source} into {args.dest} ...", file=sys.stderr)
            try:
                download(args.dest, args.source)
            except VerifyError:
                raise
            except Exception as exc:  # network, DNS, HTTP, disk: all end the same way
                raise VerifyError(
                    f"could not download {REPO_ID} from {args.source}: {type(exc).__name__}: {exc}. "
                    f"Without a network, copy the model files into {args.dest} by hand and run with --verify-only."
                ) from None
        print(verify(args.dest))
    except VerifyError as exc:
        print(f"download_model.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
