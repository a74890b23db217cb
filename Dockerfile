# Qwen3-ForcedAligner-0.6B on Triton Inference Server 2.51 (Python backend).
#
#   docker build -t sow-qwen3-aligner .                                  # CPU torch
#   docker build --build-arg TORCH_VARIANT=cu128 -t sow-qwen3-aligner:gpu .  # CUDA torch
#
# The server is the tritonserver binary inside the nvidia-pytriton wheel,
# started by scripts/serve.py exactly as the tests start it. The image holds
# no model weights: mount them read-only at /models/qwen3-forced-aligner.
# docs/deploy-readme-draft.md explains the choices made here.

# Both stages must use the same Python: the venv built in the first stage
# points at this interpreter. bookworm's glibc 2.36 satisfies the wheel's
# manylinux_2_35 tag, and the image's python is built with --enable-shared,
# which the Python backend stub needs (it embeds libpython).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Which PyTorch wheel index to take torch from: "cpu" (default, no CUDA
# libraries, several GB smaller) or a CUDA variant such as cu126 or cu128.
ARG TORCH_VARIANT=cpu
WORKDIR /src
COPY requirements/server.txt requirements/constraints.txt requirements/
# torch first, alone, from the PyTorch index: the torch pin is read from
# requirements/server.txt so that it is written in one place. Everything else
# (including torch's own dependencies) then comes from PyPI with the project's
# pins; the local build (2.13.0+cpu) satisfies the "torch==2.13.0" pin.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --no-deps \
      --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
      "$(grep -E '^torch==' requirements/server.txt)" \
 && /opt/venv/bin/pip install --no-cache-dir \
      -r requirements/server.txt -c requirements/constraints.txt

FROM ${PYTHON_IMAGE}
# A home directory: numba (through librosa) refuses at import time to load
# cached functions when no cache folder is writable, and Hugging Face and
# torch also keep caches under ~/.cache.
RUN groupadd --gid 10001 aligner \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin aligner
COPY --from=build /opt/venv /opt/venv
# Owned by root, so the server cannot change its own code.
COPY scripts/serve.py scripts/triton_supervisor.py scripts/download_model.py /app/scripts/
COPY model_repository/ /app/model_repository/
WORKDIR /app
# The venv's python first on PATH: the Python backend stub finds its
# environment (numpy, torch, qwen-asr) through the python3 it sees there.
# HF_HUB_OFFLINE: the weights are mounted, nothing is ever downloaded.
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1
# Numeric, so that runtimes checking runAsNonRoot can verify it.
USER 10001:10001
# HTTP, gRPC, Prometheus metrics.
EXPOSE 8000 8001 8002
# Ready = every model loaded (serve.py passes --strict-readiness=true).
# urlopen raises on any non-2xx status or connection error, so exit is 1.
# start-period covers importing qwen-asr (~6 s on 2 CPU cores) and loading
# the weights (0.2 s bfloat16, 5-10 s float32), with a wide margin for slow
# disks and several instances; the first success ends it early.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
# The one container command: tests/deploy runs this same list outside Docker.
# 0.0.0.0 because the ports are published; --require-api-key refuses to start
# unless SOW_QWEN3_API_KEY is a key or the word "disabled".
# Extra arguments (docker run IMAGE -- --log-verbose=1) are appended.
ENTRYPOINT ["python", "/app/scripts/serve.py", "--host", "0.0.0.0", "--require-api-key"]
