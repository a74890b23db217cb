# Qwen3-ForcedAligner-0.6B on Triton Inference Server 2.51 (Python backend),
# plus the nginx front proxy (sow-qwen3-proxy) that docker-compose.yml runs
# from the same image.
#
#   docker compose up -d --build          # the usual way: docker-compose.yml, settings in .env
#   docker build -t sow-qwen3-aligner .   # CPU torch from the PyTorch index
#   docker build --build-arg TORCH_WHEELHOUSE=wheelhouse -t sow-qwen3-aligner .   # torch from ./wheelhouse
#
# The server is the tritonserver binary inside the nvidia-pytriton wheel,
# started by sow-qwen3-serve: the package in server/, installed here like any
# other dependency, is the code the tests run. The image holds no model
# weights: mount them read-only at /models/qwen3-forced-aligner.
# docs/deploy.md explains the choices made here and every build argument.

# Both stages must use the same Python: the venv built in the first stage
# points at this interpreter. bookworm's glibc 2.36 satisfies the wheel's
# manylinux_2_35 tag, and the image's Python must come with a shared
# libpython, which the Python backend stub embeds.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Where torch comes from: a PyTorch wheel index (cpu by default; a CUDA one
# such as .../whl/cu128 for GPUs), or, when TORCH_WHEELHOUSE names a folder of
# the build context under wheelhouse/, only the wheels in it (offline or
# firewalled builds).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_WHEELHOUSE=
WORKDIR /src
COPY requirements/server.txt requirements/constraints.txt requirements/
COPY wheelhouse/ wheelhouse/
# torch first, alone: its pin is read from requirements/server.txt so that it
# is written in one place. Everything else (torch's own dependencies
# included) then comes from PyPI with the project's pins; a local build such
# as 2.13.0+cpu satisfies the "torch==2.13.0" pin.
RUN python -m venv /opt/venv \
 && torch_pin="$(grep -E '^torch==' requirements/server.txt)" \
 && if [ -n "${TORCH_WHEELHOUSE}" ]; then \
      /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index --find-links "/src/${TORCH_WHEELHOUSE}" "${torch_pin}"; \
    else \
      /opt/venv/bin/pip install --no-cache-dir --no-deps --index-url "${TORCH_INDEX_URL}" "${torch_pin}"; \
    fi \
 && /opt/venv/bin/pip install --no-cache-dir -r requirements/server.txt -c requirements/constraints.txt
# The project's packages, last, as they change most often: the contract (standard
# library only), the aligner core that model.py imports, and the launcher,
# supervisor and proxy. Their dependencies are all pinned above.
COPY contract/ contract/
COPY core/ core/
COPY server/ server/
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps ./contract ./core ./server

FROM ${PYTHON_IMAGE}
# nginx for sow-qwen3-proxy: Debian bookworm's 1.22 has the http2 and grpc modules.
# g++ and Python's headers for torch.compile, which builds the decoder's fused
# CPU kernels at load (SOW_QWEN3_COMPILE=auto, CPU in bfloat16; docs/deploy.md).
# The official Python images carry the headers; a base image whose Python is
# Debian's gets them from Debian's libpython3.X-dev.
# tcmalloc, which sow-qwen3-serve preloads into tritonserver and its model stubs
# (glibc's malloc faults every forward pass's activations in again).
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx-light=1.22.* g++=4:12.2.* libtcmalloc-minimal4=2.10-* \
 && include="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
 && if [ ! -f "${include}/Python.h" ]; then \
      version="$(python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"; \
      apt-get install -y --no-install-recommends "libpython${version}-dev=${version}.*"; \
    fi \
 && rm -rf /var/lib/apt/lists/*
# A home directory: numba (through librosa) refuses at import time to load
# cached functions when no cache folder is writable, and Hugging Face and
# torch also keep caches under ~/.cache.
RUN groupadd --gid 10001 aligner \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin aligner
# Owned by root, so the server cannot change its own code.
COPY --from=build /opt/venv /opt/venv
COPY model_repository/ /app/model_repository/
WORKDIR /app
# The venv's python first on PATH: the Python backend stub finds its
# environment (numpy, torch, qwen-asr) through the python3 it sees there.
# HF_HUB_OFFLINE: the weights are mounted, nothing is ever downloaded.
# SOW_QWEN3_HOST: all addresses, as the ports are published (a Kubernetes pod
# with the proxy as a sidecar sets 127.0.0.1).
ENV PATH=/opt/venv/bin:$PATH \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    SOW_QWEN3_MODEL_REPOSITORY=/app/model_repository \
    SOW_QWEN3_HOST=0.0.0.0
# Numeric, so that runtimes checking runAsNonRoot can verify it.
USER 10001:10001
# Triton: HTTP, gRPC, Prometheus metrics. The proxy (sow-qwen3-proxy): the same, on 8080-8082.
EXPOSE 8000 8001 8002 8080 8081 8082
# Ready = every model loaded (--strict-readiness=true). A model that fails to
# load leaves the server up and not ready: unhealthy, not restarting, and the
# log says why. urlopen raises on any non-2xx status or connection error.
# start-period covers importing qwen-asr (~6 s on 2 CPU cores), loading the
# weights (0.2 s bfloat16, 5-10 s float32) and, in bfloat16, compiling the
# decoder (~15 s), with a wide margin for slow disks and several instances;
# the first success ends it early.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=4)"]
# --require-api-key refuses to start unless SOW_QWEN3_API_KEY is a key or the
# word "disabled". Extra arguments (docker run IMAGE --log-verbose...) are
# appended; docker-compose.yml's proxy service replaces the entrypoint with
# sow-qwen3-proxy.
ENTRYPOINT ["sow-qwen3-serve", "--require-api-key"]
