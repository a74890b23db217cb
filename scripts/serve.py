#!/usr/bin/env python3
"""Start the real tritonserver on this repository's model repository, in the foreground.

A thin wrapper: the launcher is the installed package ``sow_qwen3_server``
(server/), the same code the Docker image runs as ``sow-qwen3-serve``.
``serve.py --help`` lists the options.
"""
from sow_qwen3_server.launcher import main

if __name__ == "__main__":
    main()
