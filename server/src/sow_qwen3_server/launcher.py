"""Start the real ``tritonserver`` on the model repository, in the foreground.

This is the single place that builds the server's command line: the tests,
the demo and the Docker image all start the server through it (console
script ``sow-qwen3-serve``; ``scripts/serve.py`` in a checkout).

    sow-qwen3-serve --model-dir DIR --http-port P --grpc-port P2 --metrics-port P3 [--api-key KEY]

The server binary is ``tritonserver`` from PATH when there is one (an NGC
image), else the one inside the ``nvidia-pytriton`` wheel, with a Python
backend folder made for the running interpreter. The server runs as a child
under ``supervisor``: SIGTERM/SIGINT are forwarded (the server drains
in-flight requests for --exit-timeout seconds), the exit status is the
server's, and a crashed Python backend stub (which Triton 2.51 neither restarts
nor reports) gets the model reloaded in place (explicit model-control mode);
only if that fails, or after SOW_QWEN3_MAX_RECOVERIES (5) recoveries within
SOW_QWEN3_RECOVERY_WINDOW_MINUTES (10), does the server stop with status 1 so
a restart policy brings it back.
It serves every model of the repository (qwen3_aligner and the silero_vad it
asks for voice activity). A model that fails to load leaves the server up and not ready
(``--exit-on-error=false``): the log names the path and the cause, and a
restart could not fix it. Ready means ``GET /v2/health/ready`` returns 200.
Arguments after ``--`` go to tritonserver unchanged (for example ``-- --log-verbose=1``).

The model repository is --model-repository (env SOW_QWEN3_MODEL_REPOSITORY),
by default the ``model_repository/`` of the source checkout this package is
installed from (editable install); a non-editable install (the Docker image)
must name it. Settings also come from the environment: SOW_QWEN3_MODEL_PATH,
SOW_QWEN3_HOST, SOW_QWEN3_API_KEY, SOW_QWEN3_INSTANCE_COUNT,
SOW_QWEN3_MAX_QUEUE, SOW_QWEN3_INSTANCE_KIND, SOW_QWEN3_ALLOCATOR; the model itself reads
SOW_QWEN3_DEVICE and SOW_QWEN3_DTYPE (see model_repository/qwen3_aligner/config.pbtxt).

The server and its model stubs run on tcmalloc where it is installed (Debian's
libtcmalloc-minimal4; the image has it), preloaded as Triton's release notes
describe for its own containers: ``allocator_preload``.
"""
from __future__ import annotations

import argparse
import ctypes.util
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sow_qwen3_contract.tensors import AUDIO_BYTES_PER_SECOND

from .supervisor import (
    MAX_RECOVERIES,
    MAX_RECOVERIES_ENV,
    RECOVERY_WINDOW_ENV,
    RECOVERY_WINDOW_MINUTES,
    ModelEndpoint,
    RecoveryLimit,
    supervise,
)

# server/src/sow_qwen3_server/launcher.py -> the checkout's model_repository/ (editable install only).
CHECKOUT_REPOSITORY = Path(__file__).resolve().parents[3] / "model_repository"
MODEL_NAME = "qwen3_aligner"
DEFAULT_MODEL_DIR = "/models/qwen3-forced-aligner"
AUTH_OFF = "disabled"  # the API-key value that turns auth off on purpose
# Everything but health, metadata, model config and statistics needs the key:
# logging and trace can set file paths, shared-memory can map server memory.
RESTRICTED_APIS = "inference,model-repository,shared-memory,logging,trace"
ALLOCATOR_ENV = "SOW_QWEN3_ALLOCATOR"
ALLOCATORS = ("auto", "system")  # auto: tcmalloc where installed; system: glibc's malloc
TCMALLOC = "tcmalloc_minimal"


@dataclass
class ServeOptions:
    """Everything that decides the server's command line and environment."""

    model_dir: str
    model_repository: Path = CHECKOUT_REPOSITORY
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    api_key: str = ""
    instance_count: int | None = None
    max_queue_size: int | None = None
    instance_kind: str | None = None
    exit_timeout: int = 30
    max_audio_seconds: float = 300.0
    max_recoveries: int = MAX_RECOVERIES
    recovery_window_minutes: float = RECOVERY_WINDOW_MINUTES
    server_id: str = "sow-qwen3"
    allocator: str = "auto"
    extra_args: list[str] = field(default_factory=list)


def find_tritonserver() -> tuple[Path, Path | None]:
    """The server binary, and the pytriton wheel's tritonserver folder when the binary comes from it."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path), None
    try:
        import pytriton  # the nvidia-pytriton wheel ships a full Triton 2.51
    except ImportError:
        raise SystemExit("serve.py: no tritonserver on PATH and the nvidia-pytriton wheel is not installed") from None
    home = Path(pytriton.__file__).resolve().parent / "tritonserver"
    return home / "bin" / "tritonserver", home


def state_dir(name: str, content: str) -> Path:
    """A folder under the temp dir whose name is derived from ``content``: the same content reuses it."""
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"sow-qwen3-{os.getuid()}" / f"{name}-{digest}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def python_backend_dir(wheel_home: Path) -> Path:
    """A backends folder whose python/ holds the wheel's backend and the stub for this interpreter."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = wheel_home / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.exists():
        raise SystemExit(f"serve.py: the nvidia-pytriton wheel has no Python backend stub for Python {version}")
    sources = {
        "libtriton_python.so": wheel_home / "backends" / "python" / "libtriton_python.so",
        "triton_python_backend_utils.py": wheel_home / "backends" / "python" / "triton_python_backend_utils.py",
        "triton_python_backend_stub": stub,
    }
    backends = state_dir("backends", f"{wheel_home}|{version}")
    python_dir = backends / "python"
    python_dir.mkdir(exist_ok=True)
    for name, target in sources.items():
        link = python_dir / name
        if not (link.is_symlink() and link.resolve() == target.resolve()):
            link.unlink(missing_ok=True)
            link.symlink_to(target)
    return backends


# GPU instances batch across requests (settings.batching "auto"): Triton hands one execute() up to 32 requests,
# waiting up to 2 ms for a preferred batch to form; each forward pass then keeps to the batch budget
# (config.pbtxt's batch_audio_seconds and batch_tokens). CPU instances keep config.pbtxt's batching as written.
GPU_MAX_BATCH_SIZE = 32
GPU_QUEUE_DELAY_MICROSECONDS = 2000
GPU_PREFERRED_BATCH_SIZES = (8, 16, 32)


def render_config(text: str, instance_count: int | None, max_queue_size: int | None, instance_kind: str | None) -> str:
    """config.pbtxt ``text`` with the instance count, queue size and instance kind replaced where given; a GPU
    kind also gets the GPU batching above."""
    gpu = (instance_kind or "").lower() == "gpu"
    preferred = ", ".join(map(str, GPU_PREFERRED_BATCH_SIZES))
    replacements = [
        (instance_count, r"(instance_group\s*\[\s*\{[^}]*?count:\s*)\d+", str),
        (max_queue_size, r"(max_queue_size:\s*)\d+", str),
        (instance_kind, r"(instance_group\s*\[\s*\{[^}]*?kind:\s*)KIND_\w+", lambda kind: f"KIND_{kind.upper()}"),
        (GPU_MAX_BATCH_SIZE if gpu else None, r"(^max_batch_size:\s*)\d+", str),
        (GPU_QUEUE_DELAY_MICROSECONDS if gpu else None, r"(max_queue_delay_microseconds:\s*)\d+",
         lambda delay: f"{delay}\n  preferred_batch_size: [ {preferred} ]"),
    ]
    for value, pattern, render in replacements:
        if value is None:
            continue
        text, count = re.subn(pattern, lambda match: match.group(1) + render(value), text, count=1,
                              flags=re.S | re.M)
        if count != 1:
            raise SystemExit(f"serve.py: could not set {pattern!r} in config.pbtxt")
    return text


def find_model_repository(requested: str | None) -> Path:
    """The model repository to serve: ``requested`` (flag or SOW_QWEN3_MODEL_REPOSITORY), else the checkout's.

    Exits with a message naming the setting when there is none, or when it
    holds no ``qwen3_aligner/config.pbtxt``.
    """
    repository = Path(requested) if requested else CHECKOUT_REPOSITORY
    if not (repository / MODEL_NAME / "config.pbtxt").is_file():
        where = f"{repository} has no {MODEL_NAME}/config.pbtxt" if requested else \
            "this package is not installed from a source checkout"
        raise SystemExit(f"serve.py: no model repository ({where}): pass --model-repository "
                         "or set SOW_QWEN3_MODEL_REPOSITORY to the folder that holds qwen3_aligner/")
    return repository.resolve()


def config_parameters(repository: Path, model: str = MODEL_NAME) -> dict[str, str]:
    """The parameters of the repository's config.pbtxt of ``model`` (the one place defaults live), key -> value."""
    text = (repository / model / "config.pbtxt").read_text()
    return dict(re.findall(r'key:\s*"(\w+)"\s*value:\s*\{\s*string_value:\s*"([^"]*)"', text))


def config_parameter(repository: Path, key: str) -> str:
    """One parameter's value in the repository's config.pbtxt; exits naming it when there is none."""
    value = config_parameters(repository).get(key)
    if value is None:
        raise SystemExit(f"serve.py: config.pbtxt has no parameter {key!r}")
    return value


def served_models(repository: Path) -> list[str]:
    """The models of ``repository``: its folders with a config.pbtxt (qwen3_aligner and the silero_vad it calls)."""
    return sorted(entry.name for entry in repository.iterdir() if (entry / "config.pbtxt").is_file())


def model_repository(options: ServeOptions) -> Path:
    """The repository to serve: ours, or a copy whose qwen3_aligner config.pbtxt carries the overrides.

    The copy links to the real model code and to the other models (silero_vad),
    so what runs is what is tested.
    """
    source = options.model_repository / MODEL_NAME / "config.pbtxt"
    original = source.read_text()
    rendered = render_config(original, options.instance_count, options.max_queue_size, options.instance_kind)
    if rendered == original:
        return options.model_repository
    repository = state_dir("repository", f"{options.model_repository}|{rendered}")
    model = repository / MODEL_NAME
    model.mkdir(exist_ok=True)
    (model / "config.pbtxt").write_text(rendered)
    version = model / "1"
    if not version.is_symlink():
        version.symlink_to(options.model_repository / MODEL_NAME / "1")
    for other in served_models(options.model_repository):  # the other models (silero_vad) as they are
        link = repository / other
        if other != MODEL_NAME and not link.is_symlink():
            link.symlink_to(options.model_repository / other)
    return repository


def supports_flag(binary: Path, flag: str) -> bool:
    """Whether this tritonserver build lists ``flag`` in its --help."""
    result = subprocess.run([str(binary), "--help"], capture_output=True, text=True)
    return flag in result.stdout + result.stderr


def max_input_bytes(max_audio_seconds: float) -> int:
    """The largest HTTP request a clip at the length limit needs: float32 samples at
    16 kHz, sent as binary data, plus 1 MiB for the lyrics and the JSON header."""
    return int(max_audio_seconds * AUDIO_BYTES_PER_SECOND) + 2**20


def auth_args(api_key: str) -> list[str]:
    """Flags that make inference and the model-repository API need the key (none when auth is off)."""
    if not api_key or api_key == AUTH_OFF:
        return []
    return [
        f"--http-restricted-api={RESTRICTED_APIS}:api-key={api_key}",
        f"--grpc-restricted-protocol={RESTRICTED_APIS}:api-key={api_key}",
    ]


def configured_allocator(env: Mapping[str, str]) -> str:
    """The allocator ``env`` asks for (``ALLOCATOR_ENV``; ``auto`` when unset or empty), not yet checked."""
    return env.get(ALLOCATOR_ENV, "").strip() or "auto"


def allocator_preload(allocator: str) -> str | None:
    """The malloc library tritonserver and its model stubs preload for ``allocator`` (``ALLOCATORS``), or None.

    ``auto`` is tcmalloc (its soname, which the loader finds) when installed.
    glibc's malloc returns each large freed block to the system, so every
    forward pass faults its activations in again, page by page: on the Intel
    Xeon with AMX that halved the decoder's matmul rate on a fresh 17 MB
    output, and tcmalloc, which keeps them, made the 120 s bench song's
    alignment 7-18 % faster (jemalloc was 40 % slower there). Without
    tcmalloc, ``auto`` says so on stderr and the server runs on glibc's.
    """
    if allocator == "system":
        return None
    library = ctypes.util.find_library(TCMALLOC)
    if library is None:
        print(f"serve.py: tcmalloc is not installed (Debian: libtcmalloc-minimal4), so the model runs on glibc's "
              f"malloc, slower on CPU; {ALLOCATOR_ENV}=system says that is meant", file=sys.stderr)
    return library


def with_allocator(env: dict[str, str], allocator: str) -> dict[str, str]:
    """``env`` with ``allocator``'s library (``allocator_preload``) first in LD_PRELOAD, any preload already set
    kept after it."""
    library = allocator_preload(allocator)
    if library is None:
        return env
    return {**env, "LD_PRELOAD": " ".join(filter(None, [library, env.get("LD_PRELOAD")]))}


def build_command(options: ServeOptions) -> tuple[list[str], dict[str, str]]:
    """The tritonserver argv and environment for ``options``."""
    binary, wheel_home = find_tritonserver()
    repository = model_repository(options)
    argv = [
        str(binary),
        f"--model-repository={repository}",
        f"--id={options.server_id}",
        f"--http-address={options.host}", f"--http-port={options.http_port}",
        f"--grpc-address={options.host}", f"--grpc-port={options.grpc_port}",
        f"--metrics-address={options.host}", f"--metrics-port={options.metrics_port}",
        "--allow-metrics=true", "--allow-cpu-metrics=true",
        # Otherwise the stub starts twice at load time.
        "--disable-auto-complete-config",
        "--strict-readiness=true",
        # A model that fails to load leaves the server up and not ready, its log
        # naming the path and the cause, instead of an exit a restart policy
        # would repeat forever.
        "--exit-on-error=false",
        # The supervisor reloads the model after a stub crash through the repository API.
        "--model-control-mode=explicit",
        *(f"--load-model={name}" for name in served_models(repository)),
        f"--exit-timeout-secs={options.exit_timeout}",
        *auth_args(options.api_key),
    ]
    if wheel_home is not None:
        argv.append(f"--backend-directory={python_backend_dir(wheel_home)}")
    # Triton 2.53+ can refuse oversized bodies before reading them; 2.51 cannot,
    # so there the model refuses long clips once they have arrived.
    if supports_flag(binary, "--http-max-input-size"):
        argv.append(f"--http-max-input-size={max_input_bytes(options.max_audio_seconds)}")
    argv += options.extra_args

    env = dict(os.environ)
    env["SOW_QWEN3_MODEL_PATH"] = options.model_dir
    # The stub finds its Python environment through the python3 first on PATH.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, env.get("LD_LIBRARY_PATH")]))
    env.pop("SOW_QWEN3_API_KEY", None)  # the key travels in argv only, not into the model's environment
    return argv, with_allocator(env, options.allocator)


def parse_args(argv: list[str] | None = None) -> ServeOptions:
    args_in = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in args_in:
        cut = args_in.index("--")
        args_in, extra = args_in[:cut], args_in[cut + 1:]
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=env.get("SOW_QWEN3_MODEL_PATH", DEFAULT_MODEL_DIR),
                        help="Qwen3-ForcedAligner checkpoint directory (env SOW_QWEN3_MODEL_PATH)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--model-repository", default=env.get("SOW_QWEN3_MODEL_REPOSITORY") or None,
                        help="folder holding qwen3_aligner/ (env SOW_QWEN3_MODEL_REPOSITORY; "
                             "default: the source checkout's model_repository/)")
    parser.add_argument("--host", default=env.get("SOW_QWEN3_HOST") or "127.0.0.1",
                        help="address to bind (env SOW_QWEN3_HOST; the Docker image uses 0.0.0.0)")
    parser.add_argument("--api-key", default=env.get("SOW_QWEN3_API_KEY", ""),
                        help=f"require header 'api-key: KEY' for inference (env SOW_QWEN3_API_KEY; '{AUTH_OFF}' = off)")
    parser.add_argument("--require-api-key", action="store_true",
                        help=f"refuse to start without an API key, unless it is '{AUTH_OFF}'")
    parser.add_argument("--instance-count", type=int, default=_env_int("SOW_QWEN3_INSTANCE_COUNT"))
    parser.add_argument("--max-queue-size", type=int, default=_env_int("SOW_QWEN3_MAX_QUEUE"))
    parser.add_argument("--instance-kind", choices=["cpu", "gpu"],
                        default=env.get("SOW_QWEN3_INSTANCE_KIND") or None)
    parser.add_argument("--exit-timeout", type=int, default=_env_int("SOW_QWEN3_EXIT_TIMEOUT") or 30,
                        help="seconds in-flight requests get to finish after SIGTERM (env SOW_QWEN3_EXIT_TIMEOUT)")
    parser.add_argument("--max-recoveries", type=int, default=_env_int(MAX_RECOVERIES_ENV, MAX_RECOVERIES),
                        help="model reloads after a dead stub allowed within the recovery window; one more stops "
                             f"the server with status 1 (env {MAX_RECOVERIES_ENV}, default {MAX_RECOVERIES}; 0: none)")
    parser.add_argument("--recovery-window-minutes", type=float,
                        default=_env_float(RECOVERY_WINDOW_ENV, RECOVERY_WINDOW_MINUTES),
                        help=f"minutes over which recoveries are counted (env {RECOVERY_WINDOW_ENV}, "
                             f"default {RECOVERY_WINDOW_MINUTES:g})")
    parser.add_argument("--id", dest="server_id", default="sow-qwen3", help="server id reported by GET /v2")
    parser.add_argument("--allocator", default=configured_allocator(env),
                        help=f"malloc of the server and its models: auto (tcmalloc where installed) or system "
                             f"(env {ALLOCATOR_ENV})")
    parser.add_argument("--max-audio-seconds", type=float, default=None,
                        help="the model's audio limit (env SOW_QWEN3_MAX_AUDIO_SECONDS, else config.pbtxt's); "
                             "sizes the HTTP body limit")
    args = parser.parse_args(args_in)
    args.model_repository = find_model_repository(args.model_repository)
    if args.max_audio_seconds is None:
        args.max_audio_seconds = max_audio_seconds(args.model_repository)
    if args.require_api_key and not args.api_key:
        parser.error(f"no API key: set SOW_QWEN3_API_KEY (or --api-key), or '{AUTH_OFF}' to run without auth")
    for name in ("instance_count", "max_queue_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.allocator not in ALLOCATORS:
        parser.error(f"--allocator ({ALLOCATOR_ENV}) is {args.allocator!r}: choose {' or '.join(ALLOCATORS)}")
    if args.max_recoveries < 0:
        parser.error(f"--max-recoveries ({MAX_RECOVERIES_ENV}) must be 0 or more")
    if not args.recovery_window_minutes > 0:
        parser.error(f"--recovery-window-minutes ({RECOVERY_WINDOW_ENV}) must be more than 0")
    options = vars(args)
    options.pop("require_api_key")
    return ServeOptions(**options, extra_args=extra)


def max_audio_seconds(repository: Path) -> float:
    """The model's audio limit: SOW_QWEN3_MAX_AUDIO_SECONDS, else the repository's config.pbtxt."""
    return float(os.environ.get("SOW_QWEN3_MAX_AUDIO_SECONDS") or config_parameter(repository, "max_audio_seconds"))


def _env_int(name: str, default: int | None = None) -> int | None:
    """The whole number in env ``name``, ``default`` when unset or empty; exits naming the variable otherwise."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"serve.py: {name}={value!r} is not a whole number") from None


def _env_float(name: str, default: float) -> float:
    """The number in env ``name``, ``default`` when unset or empty; exits naming the variable otherwise."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return float(value)
    except ValueError:
        raise SystemExit(f"serve.py: {name}={value!r} is not a number") from None


def recovery_limit(options: ServeOptions) -> RecoveryLimit:
    """How many recoveries the supervisor may make, and over how long."""
    return RecoveryLimit(options.max_recoveries, options.recovery_window_minutes * 60)


def model_endpoint(options: ServeOptions) -> ModelEndpoint:
    """Where the supervisor asks whether the model is ready and reloads it (loopback when bound to all addresses)."""
    host = "127.0.0.1" if options.host in ("0.0.0.0", "::", "") else options.host
    if ":" in host:
        host = f"[{host}]"
    api_key = "" if options.api_key == AUTH_OFF else options.api_key
    return ModelEndpoint(f"http://{host}:{options.http_port}", MODEL_NAME, api_key)


def main() -> None:
    options = parse_args()
    argv, env = build_command(options)
    sys.exit(supervise(argv, env, model_endpoint(options), options.exit_timeout, limit=recovery_limit(options)))


if __name__ == "__main__":
    main()
