#!/usr/bin/env bash
# Create .venv (if needed) and install the pinned development environment.
# Idempotent: when requirements/ and the packages' pyproject.toml are unchanged since
# the last successful install, it does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${SOW_QWEN3_VENV:-.venv}
stamp_of() { cat requirements/*.txt ./*/pyproject.toml | sha256sum | cut -d' ' -f1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV with $($PYTHON --version)" >&2
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.sow-qwen3-stamp" 2>/dev/null)" != "$(stamp_of)" ]; then
  echo "bootstrap: installing pinned requirements into $VENV (first run: a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -r requirements/dev.txt -c requirements/constraints.txt
  stamp_of > "$VENV/.sow-qwen3-stamp"
fi
# nginx (the front proxy, server/src/sow_qwen3_server/proxy.py) from Debian: 1.22 in
# bookworm has the http2 and grpc modules the proxy needs (nginx-light is enough).
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing nginx-light from Debian" >&2
    # Only the binary is wanted: keep the package from starting a system nginx on port 80.
    no_start=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && no_start=1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
    if [ -n "$no_start" ]; then rm -f /usr/sbin/policy-rc.d; fi
  else
    echo "bootstrap: nginx is missing and cannot be installed here; install Debian's nginx-light (the proxy tests need it)" >&2
  fi
fi
# tcmalloc from Debian: scripts/serve.py preloads it into tritonserver and its model stubs (glibc's malloc faults
# every forward pass's activations in again; sow_qwen3_server.launcher.allocator_preload), as the image does.
if ! ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing libtcmalloc-minimal4 from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libtcmalloc-minimal4 >/dev/null
  else
    echo "bootstrap: tcmalloc is missing and cannot be installed here; install Debian's libtcmalloc-minimal4 (the server runs slower without it)" >&2
  fi
fi
# Chromium and its chromedriver from Debian, for the review page's browser tests
# (tests/e2e/test_review_browser.py drives /usr/bin/chromium through /usr/bin/chromedriver; nothing is downloaded
# at test time), and Noto CJK so the page draws Chinese lyrics in its screenshot (docs/review.png).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ] || [ ! -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing chromium, chromium-driver and fonts-noto-cjk from Debian" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-noto-cjk >/dev/null
  else
    echo "bootstrap: chromium or chromedriver is missing and cannot be installed here; install Debian's chromium and chromium-driver (the review page's browser tests need them)" >&2
  fi
fi
