#!/usr/bin/env bash
# The wheels scripts/gpu_check.py installs on a GPU machine that has no network:
# Python 3.12, manylinux x86_64, into .whl/ (ignored by git). The GPU machines
# bring a recent CUDA torch, numpy and Transformers 5; these are the packages the
# aligner core pins differently or that those machines lack, each at the version
# requirements/constraints.txt pins. Run it where PyPI is reachable:
#
#   scripts/gpu_wheels.sh [DIR]        # default .whl
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.whl}"
# qwen-asr and what it imports (nagisa and soynlp split Japanese and Korean; librosa, soundfile
# and soxr load audio); transformers 4.57 with the hub and tokenizers it accepts; accelerate;
# for the Triton step: nvidia-pytriton (tritonserver 2.51 and its Python backend), tritonclient
# 2.51 (perf_analyzer) and numpy 1.26 (the 2.51 Python backend breaks on numpy 2's BYTES tensors).
names=(qwen-asr transformers huggingface-hub tokenizers accelerate nagisa dyNET38 soynlp librosa audioread pooch
       soundfile soxr sox pytz silero-vad nvidia-pytriton tritonclient numpy)
pin() {  # the version constraints.txt pins for $1 (names compare case-insensitively, - and _ alike)
  local wanted
  wanted="$(tr 'A-Z_' 'a-z-' <<<"$1")"
  while IFS='=' read -r name _ version; do
    [[ "$(tr 'A-Z_' 'a-z-' <<<"$name")" == "$wanted" ]] && { echo "$version"; return; }
  done < <(grep -v '^#' requirements/constraints.txt)
  echo "gpu_wheels.sh: $1 is not pinned in requirements/constraints.txt" >&2
  exit 1
}
mkdir -p "$out"
python=".venv/bin/python"
[[ -x "$python" ]] || python=python3
for name in "${names[@]}"; do
  spec="$name==$(pin "$name")"
  if [[ "$name" == sox ]]; then  # published as a source archive only; pure Python, so a wheel built here serves
    "$python" -m pip wheel --quiet --no-deps --wheel-dir "$out" "$spec"
    continue
  fi
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_35_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64 \
    -d "$out" "$spec"
done
du -sh "$out"
