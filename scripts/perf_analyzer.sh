#!/usr/bin/env bash
# Run perf_analyzer 2.51 (shipped in the tritonclient==2.51.0 wheel) with every argument passed through.
#
#   .venv/bin/python scripts/perf_input.py assets/amazing_grace_zh.ogg assets/amazing_grace_zh.txt -o /tmp/data.json
#   scripts/perf_analyzer.sh -m qwen3_aligner -u 127.0.0.1:8000 --input-data /tmp/data.json \
#       --concurrency-range 1:4 --measurement-mode count_windows --measurement-request-count 3 \
#       [-H api-key:KEY]          # gRPC: -i grpc -u 127.0.0.1:8001 [-H triton-grpc-protocol-api-key:KEY]
#
# The data's shapes exclude the batch dimension (perf_analyzer adds it: -b 1), so no --shape.
# An alignment takes seconds: count requests per window (as above) or use --request-count N
# with a single concurrency level; the default 5 s time windows rarely stabilise.
#
# The binary needs libb64.so.0d and libcudart.so.12 even on CPU. The nvidia-pytriton
# wheel carries both (under other names) in nvidia_pytriton.libs/; this script links
# them under the expected names into .cache/perf_analyzer-libs and puts that folder on
# LD_LIBRARY_PATH. Python: $SOW_PYTHON, else .venv/bin/python, else python3.
# Exit status 3: no usable perf_analyzer here (message on stderr); otherwise perf_analyzer's.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${SOW_PYTHON:-$repo/.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python3)"

# Line 1: the perf_analyzer binary of the installed tritonclient wheel; line 2: nvidia_pytriton.libs.
mapfile -t found < <("$python" - <<'EOF'
import importlib.metadata as metadata
import sys

def fail(message):
    sys.exit(f"perf_analyzer.sh: {message}")

try:
    client = metadata.distribution("tritonclient")
    pytriton = metadata.distribution("nvidia-pytriton")
except metadata.PackageNotFoundError as exc:
    fail(f"package {exc} is not installed (pip install tritonclient==2.51.0 nvidia-pytriton==0.7.0)")
if client.version != "2.51.0":
    fail(f"tritonclient {client.version} is installed; its perf_analyzer is missing or needs glibc 2.38 "
         "(install tritonclient==2.51.0, with --no-deps in another environment if need be)")
# Where the wheel's RECORD says it is, or (an install with pip --target, whose RECORD still points outside
# the folder) in the folder's own bin/.
places = [f.locate() for f in client.files or [] if f.name == "perf_analyzer"]
places.append(client.locate_file("bin/perf_analyzer"))
binary = next((place.resolve() for place in places if place.is_file()), None)
libs = pytriton.locate_file("nvidia_pytriton.libs")
if binary is None:
    fail("the tritonclient 2.51.0 wheel installed here has no perf_analyzer binary (Linux x86_64 only)")
if not libs.is_dir():
    fail(f"{libs} is missing: the nvidia-pytriton wheel (Linux x86_64) provides libb64 and libcudart")
print(binary)
print(libs)
EOF
)
[[ ${#found[@]} -eq 2 ]] || exit 3  # the reason is already on stderr
binary="${found[0]}"
libs="${found[1]}"

cache="$repo/.cache/perf_analyzer-libs"
mkdir -p "$cache"
for pattern in "libb64.so.0d:libb64-*.so.0d" "libcudart.so.12:libcudart-*.so.12*"; do
    name="${pattern%%:*}"
    target="$(compgen -G "$libs/${pattern#*:}" | head -n 1 || true)"
    if [[ -z "$target" ]]; then
        echo "perf_analyzer.sh: no ${pattern#*:} in $libs" >&2
        exit 3
    fi
    ln -sfn "$target" "$cache/$name"
done

export LD_LIBRARY_PATH="$cache${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$binary" "$@"
