#!/usr/bin/env python3
"""The speed benchmark: the service against stock qwen-asr (--help lists the options).

The code lives in ``sow_qwen3_tools.bench`` (tools/); this file is the command.
"""
from sow_qwen3_tools.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
