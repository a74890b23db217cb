#!/usr/bin/env python3
"""perf_analyzer --input-data JSON for one song: perf_input.py AUDIO LYRICS [--language L] -o FILE.

The code lives in ``sow_qwen3_tools.perf_input`` (tools/); this file is the command.
"""
from sow_qwen3_tools.perf_input import main

if __name__ == "__main__":
    raise SystemExit(main())
