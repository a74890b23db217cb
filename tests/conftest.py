"""Session fixtures: the tiny checkpoint, the real tritonserver on it, and in-process qwen-asr."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from sow_qwen3_tools.local_server import start_server
from support.stopping import assert_clean_stop, serving

# The loopback S3 and HTTP stores and the keyed server that the client and end-to-end tests share.
pytest_plugins = ["support.stores"]

# Every server the tests start on the tiny checkpoint runs in its float32, the reference's dtype, unless a test
# sets SOW_QWEN3_DTYPE itself: with dtype auto the load-time probe times the tiny model's tiny shapes, whose
# noise on a busy machine sometimes picks bfloat16, so two servers (or one before and after a reload) could
# disagree. The probe itself is tested with dtype auto set explicitly (tests/ops/test_ops_dtype.py).
TEST_DTYPE = os.environ.setdefault("SOW_QWEN3_DTYPE", "float32")

# start_server refuses while this is set: a test that starts tritonserver must carry the ``server`` marker, so
# that ``-m "not server"`` really starts none (sow_qwen3_tools.local_server.start_server).
WITHOUT_SERVER_MARK = "SOW_QWEN3_TEST_WITHOUT_SERVER_MARK"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a test's fixtures are set up: name the test in WITHOUT_SERVER_MARK unless it carries ``server``.

    Session fixtures (triton_server...) start during the first test that asks for them, after this hook.
    """
    if item.get_closest_marker("server") is None:
        os.environ[WITHOUT_SERVER_MARK] = item.nodeid
    else:
        os.environ.pop(WITHOUT_SERVER_MARK, None)


# A shared 2-core machine makes per-example timing meaningless: no deadlines.
settings.register_profile("sow", deadline=None, print_blob=True)
settings.load_profile("sow")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight checkpoint, as scripts/make_tiny_model.py writes it (float32)."""
    from sow_qwen3_tools.tiny_model import write_checkpoint

    return write_checkpoint(tmp_path_factory.mktemp("tiny-model"), "tiny")


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def triton_server(tiny_model_dir: Path, server_logs: Path):
    """The real tritonserver, started by scripts/serve.py on the tiny checkpoint, ready.

    Teardown checks the server stops cleanly: exit status 0, no stub process
    and no /dev/shm region left behind.
    """
    server = start_server(tiny_model_dir, server_logs)
    yield server
    assert_clean_stop(server)


@pytest.fixture(scope="session")
def single_pass_server(tiny_model_dir: Path, server_logs: Path):
    """The real tritonserver with anchored re-alignment off (SOW_QWEN3_REALIGN_PASSES=0): the single pass,
    which is what stock qwen-asr computes (in float32, as every test server: TEST_DTYPE)."""
    yield from serving(tiny_model_dir, server_logs, {"SOW_QWEN3_REALIGN_PASSES": "0"})


@pytest.fixture(scope="session")
def reference_aligner(tiny_model_dir: Path):
    """Stock in-process qwen-asr on the same checkpoint, as its README shows it."""
    import torch
    from qwen_asr import Qwen3ForcedAligner

    return Qwen3ForcedAligner.from_pretrained(str(tiny_model_dir), dtype=torch.float32, device_map="cpu")
