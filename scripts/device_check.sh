#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one call: the GPU tests (`pytest -m gpu`) and the issue 14 goal 3
# benchmarks (`python -m benchmarks.run engine fusion -- --device cuda`), each log kept.
#
#   bash scripts/device_check.sh [OUT_DIR]      (default: $OUT where set, else out/device)
#
# Made for a lent GPU machine that has PyTorch, numba, ONNX Runtime and OpenCV but neither ROS 2 nor
# this repository's virtual environment: it runs the plain `python3` over the source tree, collecting
# only the test files that hold GPU tests (their imports need no ROS 2, rosbags or simplejpeg). On a
# machine with `make setup` done, `source scripts/env.sh` first. Exits 2 where PyTorch sees no CUDA
# device (nothing would be checked), else with the first failing step's status.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT_DIR=${1:-${OUT:-out/device}}
PYTHON=${PYTHON:-python3}
TESTS_S=${TESTS_S:-180}  # limits per step (within one 600 s device call), so a hung step leaves the other's log
BENCH_S=${BENCH_S:-300}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

{
  date -u +"%Y-%m-%d %H:%M UTC"
  git log -1 --format="commit %H %s" 2>/dev/null || true
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || true
  "$PYTHON" - <<'EOF'
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "numpy", "numba", "onnxruntime", "cv2", "onnx"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as err:  # a missing package is reported here and fails its step below
        print(name, "missing:", err)
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
} 2>&1 | tee "$OUT_DIR/environment.txt"

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "device_check: PyTorch sees no CUDA device here: nothing checked" | tee -a "$OUT_DIR/environment.txt" >&2
  exit 2
fi

status=0
mapfile -t files < <(grep -rl --include='test_*.py' "pytest.mark.gpu" tests | sort)
echo "== GPU tests: ${#files[@]} files"
timeout "$TESTS_S" "$PYTHON" -m pytest -m gpu -q -rs -p no:cacheprovider "${files[@]}" 2>&1 \
  | tee "$OUT_DIR/gpu_tests.log"
step=${PIPESTATUS[0]}
[ "$step" -ne 0 ] && [ "$status" -eq 0 ] && status=$step

echo "== goal 3 benchmarks"
timeout "$BENCH_S" "$PYTHON" -m benchmarks.run engine fusion -- --device cuda 2>&1 \
  | tee "$OUT_DIR/bench_cuda.md"
step=${PIPESTATUS[0]}
[ "$step" -ne 0 ] && [ "$status" -eq 0 ] && status=$step

echo "device_check: status $status, logs in $OUT_DIR"
exit "$status"
