"""The supervisor's pure parts: /proc parsing and the stub-crash rule.

The whole supervisor runs against the real tritonserver in
tests/ops/test_ops_stub_crash.py (a SIGKILLed stub ends the server with status 1),
tests/test_model_loading.py (a stub that ends during a failed load does not) and
tests/ops/test_ops_auth.py (nor does one ended by an unload through the repository API).
"""
from __future__ import annotations

import os

from sow_qwen3_server.supervisor import STUB_COMM, ProcessState, StubWatch, children, read_stat, stub_model


def stub(pid: int, state: str = "S", model: str = "") -> ProcessState:
    return ProcessState(pid, 100, STUB_COMM, state, model)


def test_read_stat_handles_names_with_spaces_and_parentheses():
    line = "4242 (odd (name) x) Z 17 4242 4242 0 -1 4194560 0 0 0 0"
    assert read_stat(line) == ProcessState(4242, 17, "odd (name) x", "Z")


def test_children_lists_a_child_we_start_and_not_ourselves():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child blocks until the parent closes the pipe, then exits
        os.close(write_end)
        os.read(read_end, 1)
        os._exit(0)
    os.close(read_end)
    try:
        found = {child.pid: child for child in children(os.getpid())}
        assert pid in found and found[pid].parent == os.getpid() and found[pid].state != "Z"
        assert os.getpid() not in found
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)


def test_stubs_ending_before_the_model_is_ready_are_not_a_crash():
    watch = StubWatch()
    assert watch.crashed([stub(1)], ready_seen=False) is None
    assert watch.crashed([], ready_seen=False) is None  # load failed: Triton reaped it
    assert watch.crashed([stub(2)], ready_seen=True) is None


def test_a_stub_that_turns_zombie_after_ready_is_a_crash():
    watch = StubWatch()
    watch.crashed([stub(1)], ready_seen=False)
    assert watch.crashed([stub(1)], ready_seen=True) is None
    assert watch.crashed([stub(1, "Z")], ready_seen=True) == stub(1, "Z")


def test_a_stub_that_disappears_after_ready_is_a_crash():
    watch = StubWatch()
    assert watch.crashed([stub(1), stub(2)], ready_seen=True) is None
    crash = watch.crashed([stub(2)], ready_seen=True)
    assert crash is not None and crash.pid == 1 and crash.state == "gone"


def test_a_zombie_never_seen_alive_is_not_blamed():
    watch = StubWatch()
    assert watch.crashed([stub(7, "Z")], ready_seen=True) is None


def test_an_excused_stub_is_not_blamed_again():
    """An unload ends a stub on purpose; once excused, neither its zombie nor its absence is a crash."""
    watch = StubWatch()
    assert watch.crashed([stub(1)], ready_seen=True) is None
    assert watch.crashed([stub(1, "Z")], ready_seen=True) == stub(1, "Z")
    watch.excuse(1)
    assert watch.crashed([stub(1, "Z")], ready_seen=True) is None
    assert watch.crashed([stub(2)], ready_seen=True) is None  # reloaded: a new stub
    assert watch.crashed([stub(2)], ready_seen=True) is None
    crash = watch.crashed([], ready_seen=True)
    assert crash is not None and crash.pid == 2


def test_after_a_reload_only_the_new_stubs_are_watched():
    """The reload replaces the dead stub: its zombie is not blamed again, the new stub's end is."""
    watch = StubWatch()
    assert watch.crashed([stub(1)], ready_seen=True) is None
    assert watch.crashed([stub(1, "Z")], ready_seen=True) == stub(1, "Z")
    watch.restart([stub(1, "Z"), stub(2)])
    assert watch.crashed([stub(1, "Z"), stub(2)], ready_seen=True) is None
    crash = watch.crashed([stub(1, "Z")], ready_seen=True)
    assert crash is not None and crash.pid == 2 and crash.state == "gone"


def test_a_crashed_stub_names_the_model_it_served_when_alive():
    """The server runs a stub per model (qwen3_aligner, silero_vad): the supervisor must reload the right one."""
    watch = StubWatch()
    assert watch.crashed([stub(1, model="qwen3_aligner"), stub(2, model="silero_vad")], ready_seen=True) is None
    assert watch.crashed([stub(1, model="qwen3_aligner"), stub(2, "Z")], ready_seen=True) == stub(2, "Z", "silero_vad")
    watch.excuse(2)
    crash = watch.crashed([], ready_seen=True)
    assert crash is not None and (crash.pid, crash.state, crash.model) == (1, "gone", "qwen3_aligner")


def test_stub_model_reads_the_model_folder_from_the_stub_command_line(tmp_path):
    """The stub's argv[1] is MODEL_REPOSITORY/MODEL/VERSION/model.py (as tritonserver 2.51 starts it)."""
    (tmp_path / "41").mkdir()
    (tmp_path / "41" / "cmdline").write_bytes(b"\0".join([
        b"/tmp/backends/python/triton_python_backend_stub", b"/repo/model_repository/silero_vad/1/model.py",
        b"triton_python_backend_shm_region_x", b"1048576", b"1048576", b"7", b"/tmp/backends/python", b"336",
        b"silero_vad_0_0", b"DEFAULT", b""]))
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cmdline").write_bytes(b"")  # a zombie's command line is empty
    assert stub_model(41, tmp_path) == "silero_vad"
    assert stub_model(42, tmp_path) == ""
    assert stub_model(43, tmp_path) == ""  # gone
