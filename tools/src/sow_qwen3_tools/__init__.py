"""Development tools that ``scripts/`` and ``tests/`` share; not part of the image.

Installed editable from a checkout (requirements/dev.txt), so ``REPO`` is that
checkout:

* ``local_server``: the real tritonserver through scripts/serve.py as a child process, on free loopback ports;
* ``tiny_model``: the random-weight checkpoint of the real architecture (scripts/make_tiny_model.py);
* ``bench``, ``bench_song``, ``forward_profile``, ``perf_input``: the benchmarks' shared parts;
* ``docker_stack``: building the image and running compose with the real Docker engine.
"""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]  # tools/src/sow_qwen3_tools/__init__.py -> the checkout
