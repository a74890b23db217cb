"""``sow-qwen3`` run as a subprocess (the installed console script) against the real servers."""
from __future__ import annotations

import csv
import json
import os
import select
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sow_qwen3.audio import load_audio
from sow_qwen3_contract.tensors import SAMPLE_RATE
from sow_qwen3_tools.local_server import free_ports, start_server
from support.audio import noise, speech, write_clip
from support.checkpoints import broken_copy, fails_inside_inference
from support.infer import API_KEY, align_http
from support.stopping import assert_clean_stop

pytestmark = pytest.mark.server  # needs the real tritonserver

SOW_QWEN3 = str(Path(sys.executable).parent / "sow-qwen3")
LYRICS = "奇异恩典 何等甘甜\n\n我罪已得赦免\n前我失丧 今被寻回\n瞎眼今得看见\n"
TIMED = [line for line in LYRICS.splitlines() if line.strip()]


@pytest.fixture()
def env(keyed_server, s3_store) -> dict[str, str]:
    """The environment a user sets: server URL, API key and the R2 settings; nothing else from ours."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("SOW_QWEN3_")}
    return {**base, **s3_store.env(), "SOW_QWEN3_TRITON_URL": keyed_server.http_url, "SOW_QWEN3_API_KEY": API_KEY}


def run(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([SOW_QWEN3, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def song_mp3(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("cli") / "amazing-grace.mp3", speech(8.0), rate=44100, channels=2)


@pytest.fixture()
def lyrics_file(tmp_path) -> Path:
    path = tmp_path / "lyrics.txt"
    path.write_text(LYRICS, encoding="utf-8")
    return path


def test_align_s3_mp3_prints_lrc_matching_the_server(env, keyed_server, s3_store, song_mp3, lyrics_file):
    url = s3_store.put("cli/amazing-grace.mp3", song_mp3)
    done = run("align", url, str(lyrics_file), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    expected = align_http(keyed_server.http_url, load_audio(song_mp3, 300), LYRICS, "Chinese",
                          headers={"api-key": API_KEY})
    rows = done.stdout.splitlines()
    assert rows[0] == "[length: 00:08]"
    assert rows[1:] == [f"[{int(s // 60):02d}:{float(f'{s:.2f}') % 60:05.2f}]{t}" for s, t in
                        ((line.start, line.text) for line in expected.lines)]
    assert [row.split("]", 1)[1] for row in rows[1:]] == TIMED


def test_align_writes_json_to_a_file(env, song_mp3, lyrics_file, tmp_path):
    out = tmp_path / "nested" / "song.json"
    done = run("align", str(song_mp3), str(lyrics_file), "--format", "json", "--language", "zh", "-o", str(out),
               env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert f"wrote {len(TIMED)} timed lines" in done.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["language"] == "Chinese" and [line["text"] for line in data["lines"]] == TIMED
    assert [p.name for p in out.parent.iterdir()] == ["song.json"]  # no temporary file left


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required"),
    (["align", "song.mp3"], "the following arguments are required: LYRICS_FILE"),
    (["align", "song.mp3", "lyrics.txt", "--format", "srt"], "invalid choice: 'srt'"),
    (["align-batch", "manifest.csv"], "the following arguments are required: --out-dir"),
])
def test_usage_errors_exit_2(env, args, message):
    done = run(*args, env=env)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""


def test_unusable_settings_exit_2(env, song_mp3, lyrics_file, tmp_path):
    cases = [
        (["--timeout", "0"], env, "--timeout must be positive"),
        ([], {**env, "SOW_QWEN3_PROTOCOL": "ftp"}, "protocol must be one of http, grpc; got 'ftp'"),
        ([], {**env, "SOW_QWEN3_TIMEOUT": "soon"}, "SOW_QWEN3_TIMEOUT='soon' is not a number"),
        (["-o", str(tmp_path)], env, f"cannot write {tmp_path}"),
    ]
    for extra, environment, message in cases:
        done = run("align", str(song_mp3), str(lyrics_file), *extra, env=environment)
        assert done.returncode == 2 and message in done.stderr, (extra, done.stderr)


def test_bad_inputs_exit_3_with_the_reason(env, song_mp3, lyrics_file, tmp_path, s3_store):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Gloire à Dieu".encode("latin-1"))
    long_wav = write_clip(tmp_path / "long.wav", noise(301.0, seed=3, level=0.05), rate=8000)
    long_url = s3_store.put("cli/long.wav", long_wav)
    cases = [
        ((str(song_mp3), str(tmp_path / "absent.txt")), "cannot read the lyrics file"),
        ((str(song_mp3), str(empty)), "the lyrics are empty"),
        ((str(song_mp3), str(latin1)), "is not valid UTF-8"),
        ((f"s3://{s3_store.bucket}/cli/absent.mp3", str(lyrics_file)), "cli/absent.mp3 does not exist"),
        ((long_url, str(lyrics_file)), "is 301.0 s long; the limit is 300 s (from its wav header"),
        ((str(song_mp3), str(lyrics_file), "--language", "Klingon"), "Klingon"),
        ((str(song_mp3), str(lyrics_file), "--language", "not ready"), "unsupported language 'not ready'"),
    ]
    for args, message in cases:
        done = run("align", *args, env=env)
        assert done.returncode == 3, (args, done.stderr)
        assert done.stderr.startswith("sow-qwen3: BadInputError: ") and message in done.stderr, done.stderr
        assert done.stdout == ""


def test_a_wrong_api_key_exits_4(env, song_mp3, lyrics_file):
    done = run("align", str(song_mp3), str(lyrics_file), "--api-key", "wrong", env=env)
    assert done.returncode == 4 and "AuthError: the server refused the API key" in done.stderr
    no_key = {key: value for key, value in env.items() if key != "SOW_QWEN3_API_KEY"}
    assert run("align", str(song_mp3), str(lyrics_file), env=no_key).returncode == 4


def test_wrong_storage_credentials_exit_4(env, s3_store, song_mp3, lyrics_file):
    url = s3_store.put("cli/creds.mp3", song_mp3)
    done = run("align", url, str(lyrics_file), env={**env, "SOW_QWEN3_R2_SECRET_ACCESS_KEY": "not-the-secret"})
    assert done.returncode == 4 and "the storage refused the credentials" in done.stderr
    assert "not-the-secret" not in done.stderr and s3_store.secret_access_key not in done.stderr


def test_an_absent_server_exits_5(env, song_mp3, lyrics_file):
    absent = f"127.0.0.1:{free_ports(1)[0]}"
    done = run("align", str(song_mp3), str(lyrics_file), "--url", absent, env=env)
    assert done.returncode == 5 and "ServerUnavailableError" in done.stderr
    health = run("health", env={**env, "SOW_QWEN3_TRITON_URL": absent})
    assert health.returncode == 5 and "live: no, model ready: no" in health.stdout and "not ready" in health.stderr


def test_a_failure_inside_the_model_exits_6(env, tiny_model_dir, server_logs, song_mp3, lyrics_file, tmp_path):
    model_dir = broken_copy(tiny_model_dir, tmp_path, fails_inside_inference)
    server = start_server(model_dir, server_logs)
    try:
        done = run("align", str(song_mp3), str(lyrics_file), "--url", server.http_url, "--api-key", "", env=env)
    finally:
        assert_clean_stop(server)
    assert done.returncode == 6, done.stderr
    assert "ServerError: the server failed to align: alignment failed: RuntimeError" in done.stderr
    assert done.stdout == ""


def test_health_of_the_running_server(env, keyed_server):
    done = run("health", env=env)
    assert done.returncode == 0 and done.stdout == f"{keyed_server.http_url} (http) live: yes, model ready: yes\n"
    grpc = run("health", "--url", keyed_server.grpc_url, "--protocol", "grpc", env=env)
    assert grpc.returncode == 0 and "(grpc) live: yes, model ready: yes" in grpc.stdout


def test_help_documents_the_exit_codes(env):
    done = run("--help", env=env)
    assert done.returncode == 0
    for code in ("0 success", "2 usage error", "3 bad input", "4 authentication refused", "5 server unavailable",
                 "6 the server failed", "130 interrupted"):
        assert code in " ".join(done.stdout.split()), code


def test_the_url_scheme_chooses_the_protocol(env, keyed_server, song_mp3, lyrics_file):
    over_http = run("align", str(song_mp3), str(lyrics_file), "--url", f"http://{keyed_server.http_url}", env=env)
    over_grpc = run("align", str(song_mp3), str(lyrics_file), "--url", f"grpc://{keyed_server.grpc_url}", env=env)
    assert over_http.returncode == 0, over_http.stderr
    assert over_grpc.returncode == 0, over_grpc.stderr
    assert over_grpc.stdout == over_http.stdout and len(over_grpc.stdout.splitlines()) == len(TIMED) + 1
    for protocol, address in (("grpc", keyed_server.grpc_url), ("http", keyed_server.http_url)):
        health = run("health", env={**env, "SOW_QWEN3_TRITON_URL": f"{protocol}://{address}"})
        assert health.returncode == 0 and health.stdout == f"{address} ({protocol}) live: yes, model ready: yes\n"


@pytest.mark.parametrize("url, protocol", [("grpc://{grpc}", "http"), ("http://{http}", "grpc"),
                                           ("https://{http}", "grpc")])
def test_a_scheme_that_contradicts_the_protocol_is_a_usage_error(env, keyed_server, url, protocol):
    url = url.format(grpc=keyed_server.grpc_url, http=keyed_server.http_url)
    done = run("health", "--url", url, "--protocol", protocol, env=env)
    assert done.returncode == 2, done.stderr
    assert f"the server URL {url!r} means the" in done.stderr and f"but {protocol} was asked for" in done.stderr
    assert done.stdout == ""


def write_manifest(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([header, *rows])
    return path


def test_batch_aligns_a_catalogue_and_reports_failures(env, s3_store, http_files, tmp_path, lyrics_file):
    songs = tmp_path / "songs"
    songs.mkdir()
    first = s3_store.put("batch/first.flac", write_clip(songs / "first.flac", speech(5.0), rate=44100, channels=2))
    second = http_files.add(write_clip(songs / "second.ogg", speech(4.0), rate=22050), "batch-second.ogg")
    write_clip(songs / "third.wav", noise(3.0, seed=4), rate=SAMPLE_RATE)
    (songs / "lyrics.txt").write_text(LYRICS, encoding="utf-8")
    manifest = write_manifest(songs / "catalogue.csv", ["source", "lyrics", "language", "name"], [
        [first, "lyrics.txt", "Chinese", ""],
        [second, "lyrics.txt", "", "second"],
        ["third.wav", "lyrics.txt", "zh", ""],
        [f"s3://{s3_store.bucket}/batch/missing.mp3", "lyrics.txt", "", ""],
        ["third.wav", "no-such-lyrics.txt", "zh", "third-b"],
    ])
    out = tmp_path / "out"
    done = run("align-batch", str(manifest), "--out-dir", str(out), "--concurrency", "3", env=env)
    assert done.returncode == 1, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["first.lrc", "quality.csv", "second.lrc", "third.lrc"]
    assert "5 songs: 3 aligned, 0 already done, 2 failed" in done.stderr
    quality = list(csv.DictReader((out / "quality.csv").read_text(encoding="utf-8").splitlines()))
    assert [row["name"] for row in quality] == ["first", "second", "third"]
    verdicts = [row["verdict"] for row in quality]
    assert set(verdicts) <= {"pass", "review", "fail"} and all(row["flagged_lines"].isdigit() for row in quality)
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in ("pass", "review", "fail"))
    assert f"quality of the 3 songs aligned now: {counts}" in done.stderr
    assert "row 5 s3://worship/batch/missing.mp3: BadInputError: s3://worship/batch/missing.mp3 does not exist" \
        in done.stderr
    assert "row 6" in done.stderr and "cannot read the lyrics file" in done.stderr
    for name in ("first", "second", "third"):
        rows = (out / f"{name}.lrc").read_text(encoding="utf-8").splitlines()
        assert [row.split("]", 1)[1] for row in rows[1:]] == TIMED

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    hits = http_files.hits["batch-second.ogg"]
    again = run("align-batch", str(manifest), "--out-dir", str(out), env=env)
    assert again.returncode == 1
    assert "5 songs: 0 aligned, 3 already done, 2 failed" in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert http_files.hits["batch-second.ogg"] == hits  # a finished song is not fetched again


def default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so that Python turns it into KeyboardInterrupt
    even when the test run itself was started with SIGINT ignored (a shell's background job: ``cmd &``)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_batch_resumes_after_an_interrupted_run(env, http_files, tmp_path, lyrics_file):
    folder = tmp_path / "songs"
    folder.mkdir()
    (folder / "lyrics.txt").write_text(LYRICS, encoding="utf-8")
    urls = [http_files.add(write_clip(folder / f"resume-{index}.wav", speech(3.0 + index), rate=SAMPLE_RATE))
            for index in range(3)]
    manifest = folder / "catalogue.tsv"
    manifest.write_text("".join(f"{url}\tlyrics.txt\n" for url in urls), encoding="utf-8")  # TSV, no header
    out = tmp_path / "out"
    reached = http_files.hold("resume-1.wav")  # the second song's download waits until released
    process = subprocess.Popen([SOW_QWEN3, "align-batch", str(manifest), "--out-dir", str(out), "--concurrency", "1"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_sigint)
    try:
        assert reached.wait(timeout=120), "the second song was never requested"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        http_files.release("resume-1.wav")
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "3 songs: 1 aligned, 0 already done, 0 failed" in stderr
    assert "interrupted with 2 songs not done; run the same command again to resume" in stderr
    # Nothing half-written; quality.csv holds the one song that finished.
    assert sorted(p.name for p in out.iterdir()) == ["quality.csv", "resume-0.lrc"]
    assert [row["name"] for row in csv.DictReader((out / "quality.csv").read_text(encoding="utf-8").splitlines())] \
        == ["resume-0"]
    first_hits = http_files.hits["resume-0.wav"]
    # The review page saved the first song (it adds a "reviewed" column): the second run keeps that mark.
    quality_file = out / "quality.csv"
    header, row = quality_file.read_text(encoding="utf-8").splitlines()
    quality_file.write_text(f"{header},reviewed\n{row},yes\n", encoding="utf-8")

    again = run("align-batch", str(manifest), "--out-dir", str(out), "--concurrency", "2", env=env)
    assert again.returncode == 0, again.stderr
    assert "3 songs: 2 aligned, 1 already done, 0 failed" in again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["quality.csv", "resume-0.lrc", "resume-1.lrc", "resume-2.lrc"]
    rows = list(csv.DictReader(quality_file.read_text(encoding="utf-8").splitlines()))
    assert [(row["name"], row["reviewed"]) for row in rows] == [("resume-0", "yes"), ("resume-1", ""), ("resume-2", "")]
    assert rows[0] == {**dict(zip(header.split(","), row.split(","))), "reviewed": "yes"}
    assert http_files.hits["resume-0.wav"] == first_hits


# align-batch with one stand-in: os.replace holds the first rename of a .partial file until the
# process ends, so that the SIGINT is sure to land while a temporary output file exists.
HELD_WRITE = """
import os, sys, threading
replace = os.replace
def held(source, target, *args, **kwargs):
    if str(source).endswith(".partial"):
        print("writing", flush=True)
        threading.Event().wait()
    return replace(source, target, *args, **kwargs)
os.replace = held
from sow_qwen3.cli import main
sys.exit(main())
"""


def test_an_interrupt_while_writing_leaves_no_partial_file(env, tmp_path, song_mp3, lyrics_file):
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text(f"{song_mp3},{lyrics_file}\n", encoding="utf-8")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", HELD_WRITE, "align-batch", str(manifest), "--out-dir", str(out),
                                "--concurrency", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_sigint)
    try:
        assert select.select([process.stdout], [], [], 120)[0], "the output was never written"
        assert process.stdout.readline() == "writing\n"
        assert [p.suffix for p in out.iterdir()] == [".partial"]  # the write is in progress
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted with 1 songs not done" in stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_outputs_honour_the_umask(env, tmp_path, song_mp3, lyrics_file, umask):
    single = tmp_path / "single.lrc"
    done = subprocess.run([SOW_QWEN3, "align", str(song_mp3), str(lyrics_file), "-o", str(single)], env=env,
                          capture_output=True, text=True, timeout=180, umask=umask)
    assert done.returncode == 0, done.stderr
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text(f"{song_mp3},{lyrics_file}\n", encoding="utf-8")
    batch = subprocess.run([SOW_QWEN3, "align-batch", str(manifest), "--out-dir", str(tmp_path / "out")], env=env,
                           capture_output=True, text=True, timeout=180, umask=umask)
    assert batch.returncode == 0, batch.stderr
    for path in (single, tmp_path / "out" / f"{song_mp3.stem}.lrc"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


@pytest.mark.parametrize("content, message", [
    ("", "lists no songs"),
    ("source,lyrics,tempo\nsong.mp3,l.txt,90\n", "header columns must be among"),
    ("song.mp3\n", "row 1: needs a source and a lyrics file"),
    ("a/song.mp3,l.txt\nb/song.mp3,l.txt\n", "rows 1 and 2 would both write song.*"),
])
def test_a_bad_manifest_is_a_usage_error(env, tmp_path, content, message):
    manifest = tmp_path / "catalogue.csv"
    manifest.write_text(content, encoding="utf-8")
    done = run("align-batch", str(manifest), "--out-dir", str(tmp_path / "out"), env=env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
