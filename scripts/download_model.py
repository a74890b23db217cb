#!/usr/bin/env python3
"""Fetch the real Qwen3-ForcedAligner-0.6B weights and verify them.

A thin wrapper: the code is the installed package ``sow_qwen3_server``
(server/), the same code the Docker image runs as ``sow-qwen3-download-model``.
``download_model.py --help`` lists the options.
"""
from sow_qwen3_server.download_model import main

if __name__ == "__main__":
    raise SystemExit(main())
