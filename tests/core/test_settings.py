from pathlib import Path

import pytest

from sow_aligner import settings
from sow_aligner.settings import SettingsError
from sow_qwen3_contract.quality import Thresholds
from sow_qwen3_server import launcher

MODEL_REPOSITORY = Path(__file__).resolve().parents[2] / "model_repository"


def config_parameters() -> dict[str, str]:
    """The parameters block of the real config.pbtxt."""
    return launcher.config_parameters(MODEL_REPOSITORY)


def test_config_pbtxt_defaults():
    resolved = settings.resolve(config_parameters(), {})
    assert resolved.model_path == Path("/models/qwen3-forced-aligner")
    assert resolved.device == ""
    assert resolved.dtype == "auto"
    assert resolved.max_audio_seconds == 300
    assert resolved.encoder_attention == "windowed"
    assert resolved.torch_threads == 0


def test_config_pbtxt_has_exactly_the_known_parameters():
    assert set(config_parameters()) == set(settings.PARAMETERS) | set(Thresholds.parameter_keys())


def test_vad_model_from_config_and_switched_off_by_none():
    assert settings.resolve(config_parameters(), {}).vad_model == "silero_vad"
    assert settings.resolve(config_parameters(), {"SOW_QWEN3_VAD_MODEL": "None"}).vad_model == ""
    assert settings.resolve(config_parameters(), {"SOW_QWEN3_VAD_MODEL": "my_vad"}).vad_model == "my_vad"


def test_environment_overrides_config():
    env = {"SOW_QWEN3_MODEL_PATH": "/tmp/m", "SOW_QWEN3_DEVICE": "CPU", "SOW_QWEN3_DTYPE": "float32",
           "SOW_QWEN3_MAX_AUDIO_SECONDS": "60", "SOW_QWEN3_ENCODER_ATTENTION": "full", "SOW_QWEN3_TORCH_THREADS": "3"}
    resolved = settings.resolve(config_parameters(), env)
    assert (resolved.model_path, resolved.device, resolved.dtype) == (Path("/tmp/m"), "cpu", "float32")
    assert (resolved.max_audio_seconds, resolved.encoder_attention, resolved.torch_threads) == (60, "full", 3)


def test_empty_environment_value_keeps_config():
    assert settings.resolve(config_parameters(), {"SOW_QWEN3_DTYPE": ""}).dtype == "auto"


@pytest.mark.parametrize("variable,value,expected", [
    ("SOW_QWEN3_DEVICE", "tpu", "one of auto, cuda, mps, cpu"),
    ("SOW_QWEN3_DTYPE", "int8", "one of auto, bfloat16, float16, float32"),
    ("SOW_QWEN3_MAX_AUDIO_SECONDS", "five", "a number"),
    ("SOW_QWEN3_MAX_AUDIO_SECONDS", "0", "a number >= 1"),
    ("SOW_QWEN3_MAX_AUDIO_SECONDS", "nan", "a number >= 1"),
    ("SOW_QWEN3_TORCH_THREADS", "-1", "a number >= 0"),
    ("SOW_QWEN3_MAX_AUDIO_SECONDS", "900.5", "at most 900"),
    ("SOW_QWEN3_MAX_AUDIO_SECONDS", "901", "at most 900"),
    ("SOW_QWEN3_REALIGN_PASSES", "1.5", "an integer"),
    ("SOW_QWEN3_REALIGN_PASSES", "-1", "a number >= 0"),
    ("SOW_QWEN3_REALIGN_PASSES", "11", "at most 10"),
    ("SOW_QWEN3_WINDOW_SECONDS", "9", "a number >= 10"),
    ("SOW_QWEN3_WINDOW_SECONDS", "inf", "a number >= 10"),
    ("SOW_QWEN3_BATCHING", "always", "one of auto, on, off"),
    ("SOW_QWEN3_BATCH_AUDIO_SECONDS", "0", "a number >= 1"),
    ("SOW_QWEN3_BATCH_TOKENS", "many", "an integer"),
])
def test_bad_values_name_the_variable(variable, value, expected):
    with pytest.raises(SettingsError) as error:
        settings.resolve(config_parameters(), {variable: value})
    assert variable in str(error.value) and repr(value) in str(error.value) and expected in str(error.value)


def test_a_renamed_variable_is_refused_with_its_new_name():
    """SOW_QWEN3_DECODER_ATTENTION (an earlier release's) is not ignored: the error names its replacement and the
    value to give it; left empty, it is no error."""
    with pytest.raises(SettingsError) as error:
        settings.resolve(config_parameters(), {"SOW_QWEN3_DECODER_ATTENTION": "sdpa"})
    assert str(error.value) == ("SOW_QWEN3_DECODER_ATTENTION was renamed SOW_QWEN3_ATTENTION_KERNEL (same values): "
                                "set SOW_QWEN3_ATTENTION_KERNEL=sdpa instead")
    resolved = settings.resolve(config_parameters(), {"SOW_QWEN3_DECODER_ATTENTION": "",
                                                      "SOW_QWEN3_ATTENTION_KERNEL": "sdpa"})
    assert resolved.attention_kernel == "sdpa"


def test_missing_parameter_is_named():
    parameters = config_parameters()
    del parameters["dtype"]
    with pytest.raises(SettingsError, match="lacks the parameters dtype"):
        settings.resolve(parameters, {})


@pytest.mark.parametrize("seconds", [10, 180, 399.9, 400])
def test_window_the_timestamp_head_can_time_is_accepted(seconds):
    settings.check_window_limit(seconds, classify_num=5000, segment_ms=80)


@pytest.mark.parametrize("seconds", [400.5, 401, 900])
def test_window_past_the_timestamp_head_is_refused_with_the_reason(seconds):
    with pytest.raises(SettingsError) as error:
        settings.check_window_limit(seconds, classify_num=5000, segment_ms=80)
    message = str(error.value)
    assert "window_seconds" in message and "SOW_QWEN3_WINDOW_SECONDS" in message
    assert repr(f"{seconds:g}") in message and "at most 400 s" in message
    assert "5000 classes of 80 ms" in message and "wrong times" in message


def test_window_limit_comes_from_the_models_head_not_a_constant():
    settings.check_window_limit(300, classify_num=3750, segment_ms=80)
    with pytest.raises(SettingsError, match="at most 300 s"):
        settings.check_window_limit(301, classify_num=3750, segment_ms=80)
    settings.check_window_limit(800, classify_num=5000, segment_ms=160)


def test_realign_and_window_defaults_and_overrides():
    default = settings.resolve(config_parameters(), {})
    assert (default.realign_passes, default.window_seconds) == (2, 180)
    changed = settings.resolve(config_parameters(), {"SOW_QWEN3_REALIGN_PASSES": "0", "SOW_QWEN3_WINDOW_SECONDS": "25",
                                                     "SOW_QWEN3_MAX_AUDIO_SECONDS": "900"})
    assert (changed.realign_passes, changed.window_seconds, changed.max_audio_seconds) == (0, 25, 900)


def test_batching_is_on_for_cuda_instances_by_default():
    default = settings.resolve(config_parameters(), {})
    assert (default.batching, default.batch_audio_seconds, default.batch_tokens) == ("auto", 4800, 131072)
    assert default.batches_on("cuda:1") and not default.batches_on("cpu") and not default.batches_on("mps")
    forced = settings.resolve(config_parameters(), {"SOW_QWEN3_BATCHING": "on", "SOW_QWEN3_BATCH_TOKENS": "9000"})
    assert forced.batches_on("cpu") and forced.batch_tokens == 9000
    assert not settings.resolve(config_parameters(), {"SOW_QWEN3_BATCHING": "off"}).batches_on("cuda:0")


@pytest.mark.parametrize("requested,kind,device_id,cuda,mps,expected", [
    ("", "GPU", 1, True, False, "cuda:1"),
    ("", "CPU", 0, True, True, "cpu"),
    ("", "MODEL", 0, False, True, "mps"),
    ("auto", "CPU", 0, True, True, "cuda:0"),
    ("auto", "GPU", 2, True, False, "cuda:2"),
    ("auto", "CPU", 0, False, True, "mps"),
    ("auto", "CPU", 0, False, False, "cpu"),
    ("cpu", "GPU", 0, True, True, "cpu"),
    ("cuda", "CPU", 0, True, False, "cuda:0"),
    ("mps", "CPU", 0, False, True, "mps"),
])
def test_device_resolution(requested, kind, device_id, cuda, mps, expected):
    assert settings.resolve_device(requested, kind, device_id, cuda, mps) == expected


@pytest.mark.parametrize("requested,kind", [("cuda", "CPU"), ("", "GPU"), ("mps", "CPU")])
def test_missing_device_is_an_error(requested, kind):
    with pytest.raises(SettingsError, match="not available"):
        settings.resolve_device(requested, kind, 0, cuda_available=False, mps_available=False)


GIB = 1024**3


@pytest.mark.parametrize("requested,device,expected", [
    ("float16", "cpu", "float16"),
    ("float32", "cuda:0", "float32"),
    ("bfloat16", "cpu", "bfloat16"),
    ("auto", "cuda:0", "bfloat16"),
    ("auto", "mps", "float32"),
    ("auto", "cpu", None),  # measured at load: sow_aligner.dtype_probe
])
def test_dtype_resolution(requested, device, expected):
    assert settings.resolve_dtype(requested, device) == expected


@pytest.mark.parametrize("cpu_limit,usable,instances,expected", [
    (None, 8, 1, 8), (None, 8, 2, 4), (4.0, 16, 1, 4), (4.0, 16, 3, 1), (1.5, 2, 1, 1), (None, 2, 4, 1),
])
def test_cpu_share(cpu_limit, usable, instances, expected):
    assert settings.cpu_share(cpu_limit, usable, instances) == expected


def test_memory_limit():
    assert settings.memory_limit(8 * GIB, 24 * GIB) == 8 * GIB
    assert settings.memory_limit(9223372036854771712, 24 * GIB) == 24 * GIB  # cgroup v1 "no limit"
    assert settings.memory_limit(None, 24 * GIB) == 24 * GIB


def cgroup(root: Path, files: dict[str, str]) -> Path:
    """A cgroup filesystem stand-in: ``files`` (relative path -> text) under ``root``."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("files,memory,cpus", [
    ({"memory.max": "8589934592\n", "cpu.max": "200000 100000\n"}, 8 * GIB, 2.0),
    ({"memory.max": "max\n", "cpu.max": "max 100000\n"}, None, None),
    ({"memory.max": "4294967296\n", "cpu.max": "150000 100000\n",  # v2 wins over a stray v1 tree
      "memory/memory.limit_in_bytes": "1024\n", "cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"},
     4 * GIB, 1.5),
    ({"memory/memory.limit_in_bytes": "8589934592\n", "cpu/cpu.cfs_quota_us": "100000\n",
      "cpu/cpu.cfs_period_us": "100000\n"}, 8 * GIB, 1.0),
    ({"memory/memory.limit_in_bytes": "9223372036854771712\n", "cpu/cpu.cfs_quota_us": "-1\n",
      "cpu/cpu.cfs_period_us": "100000\n"}, 9223372036854771712, None),
    ({}, None, None),
], ids=["v2", "v2-unlimited", "v2-first", "v1", "v1-unlimited", "none"])
def test_cgroup_limits_from_v1_and_v2(tmp_path, files, memory, cpus):
    root = cgroup(tmp_path, files)
    assert settings.cgroup_memory_limit(root) == memory
    assert settings.cgroup_cpu_limit(root) == cpus
