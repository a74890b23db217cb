#!/usr/bin/env python3
"""Whole songs on the real-size model: re-alignment's cost and long songs' peak memory (--help).

The code lives in ``sow_qwen3_tools.bench_song`` (tools/); this file is the command.
"""
from sow_qwen3_tools.bench_song import main

if __name__ == "__main__":
    raise SystemExit(main())
