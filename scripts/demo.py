#!/usr/bin/env python3
"""The main job end to end: start tritonserver, align the bundled sample, print the LRC, stop.

    demo.py [--model-dir DIR] [--audio FILE --lyrics FILE] [--language L]

Uses the real Qwen3-ForcedAligner weights when DIR (default
$SOW_QWEN3_MODEL_PATH or /models/qwen3-forced-aligner) holds them; otherwise
builds the tiny random-weight demo model into .cache/demo-model and says
loudly that its timestamps are meaningless.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sow_qwen3_server.download_model import VerifyError, verify
from sow_qwen3_tools import REPO
from sow_qwen3_tools.local_server import start_server

DEMO_MODEL = REPO / ".cache" / "demo-model"
BANNER = """
######################################################################
#  DEMO MODEL: no real Qwen3-ForcedAligner weights were found at     #
#  {path:<66}#
#  so this run uses a tiny RANDOM-WEIGHT model. The pipeline is      #
#  real; the TIMESTAMPS BELOW ARE MEANINGLESS. For real timings run  #
#  scripts/download_model.py, or set SOW_QWEN3_MODEL_PATH.           #
######################################################################
"""


def choose_model(model_dir: Path) -> tuple[Path, bool]:
    """The checkpoint to serve and whether it is the real one."""
    try:
        print(f"demo: using real weights: {verify(model_dir)}", file=sys.stderr)
        return model_dir, True
    except (VerifyError, OSError):
        pass
    if not (DEMO_MODEL / "model.safetensors").exists():
        from sow_qwen3_tools.tiny_model import write_checkpoint

        write_checkpoint(DEMO_MODEL, "tiny")
    return DEMO_MODEL, False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path,
                        default=Path(os.environ.get("SOW_QWEN3_MODEL_PATH", "/models/qwen3-forced-aligner")))
    parser.add_argument("--audio", type=Path, default=REPO / "assets" / "amazing_grace_zh.ogg")
    parser.add_argument("--lyrics", type=Path, default=REPO / "assets" / "amazing_grace_zh.txt")
    parser.add_argument("--language", default="Chinese")
    args = parser.parse_args(argv)

    model_dir, real = choose_model(args.model_dir)
    if not real:
        print(BANNER.format(path=str(args.model_dir)), file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="sow-qwen3-demo-") as logs:
        print(f"demo: starting tritonserver on {model_dir} ...", file=sys.stderr)
        server = start_server(model_dir, Path(logs))
        try:
            print(f"demo: ready at http://{server.http_url}; aligning {args.audio.name}", file=sys.stderr)
            command = [str(Path(sys.executable).parent / "sow-qwen3"), "align", str(args.audio), str(args.lyrics),
                       "--language", args.language, "--url", server.http_url]
            status = subprocess.run(command).returncode
        finally:
            server.stop()
    if not real:
        print("demo: (random-weight demo model: the timestamps above are meaningless)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
