"""The supervisor's pure parts: /proc parsing, the stub-crash rule, the recovery limit and the stuck-unload rule.

The whole supervisor runs against the real tritonserver in
tests/ops/test_ops_stub_crash.py (a SIGKILLed stub ends the server with status 1),
tests/test_model_loading.py (a stub that ends during a failed load does not) and
tests/ops/test_ops_auth.py (nor does one ended by an unload through the repository API);
the recovery limit in tests/ops/test_ops_recovery_limit.py.
"""
from __future__ import annotations

import os

import pytest

from sow_qwen3_server import launcher
from sow_qwen3_server.supervisor import (
    MAX_RECOVERIES,
    RECOVERY_WINDOW_MINUTES,
    STUB_COMM,
    ProcessState,
    RecoveryLimit,
    StubWatch,
    StuckUnload,
    children,
    read_stat,
    stub_model,
)


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


def test_recoveries_are_allowed_up_to_the_count_within_the_window():
    limit = RecoveryLimit(count=2, window=600.0)
    assert limit.allow(0.0) and limit.allow(100.0)
    assert not limit.allow(200.0)  # a third within 10 minutes of the first: refused
    assert not limit.allow(599.0)
    assert limit.allow(600.0)  # the first has left the window: one more may start
    assert not limit.allow(650.0)  # 100 and 600 are still in it
    assert limit.allow(700.5) and limit.started == [600.0, 700.5]


def test_a_refused_recovery_is_not_counted_and_zero_refuses_every_one():
    limit = RecoveryLimit(count=1, window=60.0)
    assert limit.allow(0.0)
    assert not limit.allow(30.0) and not limit.allow(59.0)
    assert limit.started == [0.0]  # the refusals did not push the window on
    assert limit.allow(60.0)
    never = RecoveryLimit(count=0, window=60.0)
    assert not never.allow(0.0) and never.started == []


def test_the_refusal_says_how_many_in_how_long_which_model_and_the_settings():
    limit = RecoveryLimit(count=3, window=600.0)
    for when in (0.0, 60.0, 120.0):
        assert limit.allow(when)
    assert not limit.allow(150.0)
    line = limit.refusal("qwen3_aligner", 150.0)
    assert line.startswith("ERROR: ") and "\n" not in line
    assert "model qwen3_aligner" in line and "after 3 recoveries in 2.5 minutes" in line
    assert "SOW_QWEN3_MAX_RECOVERIES=3" in line and "SOW_QWEN3_RECOVERY_WINDOW_MINUTES=10" in line
    assert "status 1" in line


def test_the_default_limit_is_five_within_ten_minutes():
    assert (MAX_RECOVERIES, RECOVERY_WINDOW_MINUTES) == (5, 10.0)
    assert RecoveryLimit() == RecoveryLimit(5, 600.0)


def test_a_stop_is_stuck_only_once_no_stub_lives_for_the_settle_time():
    watch = StuckUnload(settle=2.0)
    assert not watch.stuck([stub(1), stub(2, "Z")], 0.0) and not watch.drained  # requests still running
    assert not watch.stuck([stub(2, "Z")], 1.0) and watch.drained  # only the crashed copy's zombie
    assert not watch.stuck([stub(2, "Z")], 2.5)
    assert watch.stuck([], 3.0)
    watch = StuckUnload(settle=2.0)
    assert not watch.stuck([], 0.0)
    assert not watch.stuck([stub(3)], 1.0) and not watch.drained  # a stub came back (a load): start again
    assert not watch.stuck([], 1.5) and watch.stuck([], 3.5)


def test_the_launcher_reads_the_recovery_settings(monkeypatch):
    monkeypatch.setenv("SOW_QWEN3_MAX_RECOVERIES", "2")
    monkeypatch.setenv("SOW_QWEN3_RECOVERY_WINDOW_MINUTES", "1.5")
    options = launcher.parse_args(["--model-dir", "/m"])
    assert launcher.recovery_limit(options) == RecoveryLimit(2, 90.0)
    assert launcher.parse_args(["--model-dir", "/m", "--max-recoveries", "0"]).max_recoveries == 0
    monkeypatch.setenv("SOW_QWEN3_MAX_RECOVERIES", "")
    monkeypatch.delenv("SOW_QWEN3_RECOVERY_WINDOW_MINUTES")
    assert launcher.recovery_limit(launcher.parse_args(["--model-dir", "/m"])) == RecoveryLimit()


@pytest.mark.parametrize("name, value, wanted", [
    ("SOW_QWEN3_MAX_RECOVERIES", "many", "SOW_QWEN3_MAX_RECOVERIES='many' is not a whole number"),
    ("SOW_QWEN3_MAX_RECOVERIES", "-1", "SOW_QWEN3_MAX_RECOVERIES"),
    ("SOW_QWEN3_RECOVERY_WINDOW_MINUTES", "ten", "SOW_QWEN3_RECOVERY_WINDOW_MINUTES='ten' is not a number"),
    ("SOW_QWEN3_RECOVERY_WINDOW_MINUTES", "0", "SOW_QWEN3_RECOVERY_WINDOW_MINUTES"),
])
def test_a_bad_recovery_setting_stops_the_launcher_naming_it(monkeypatch, capsys, name, value, wanted):
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        launcher.parse_args(["--model-dir", "/m"])
    assert wanted in f"{exit_info.value.code}{capsys.readouterr().err}"
