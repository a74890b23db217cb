#!/usr/bin/env python3
"""Write a random-weight Qwen3-ForcedAligner checkpoint.

    make_tiny_model.py OUT_DIR [--preset tiny|real] [--dtype float32|bfloat16]

The code lives in ``sow_qwen3_tools.tiny_model`` (tools/); this file is the command.
"""
from sow_qwen3_tools.tiny_model import main

if __name__ == "__main__":
    raise SystemExit(main())
