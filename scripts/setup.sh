#!/usr/bin/env bash
# One-shot, idempotent set-up of panoptic_ros on a plain Debian 12 / Python 3.11 machine:
#   1. a virtual environment in .venv with the pinned dependencies (requirements*.txt, constraints.txt),
#   2. this package's ROS 2 messages built with CMake against the ROS 2 wheels (build/, install/),
#   3. links that make the generated message modules importable from the source tree,
#   4. an editable install of the package (the `panoptic-ros` command).
# Each step is skipped when its inputs have not changed since it last succeeded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
STAMPS="$VENV/.panoptic-stamps"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

# A stamp records the hash of a step's inputs; the step reruns only when the hash changes.
inputs_hash() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }
stamp_ok() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_set() { mkdir -p "$STAMPS"; printf '%s' "$2" >"$STAMPS/$1"; }

# --- 0. tools from Debian's archive -------------------------------------------------------------
need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v cc >/dev/null || need_apt+=(gcc)
command -v make >/dev/null || need_apt+=(make)
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need_apt[*]}: run 'sudo apt-get install ${need_apt[*]}' and retry"
  say "installing ${need_apt[*]} from Debian's archive"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "the ROS 2 wheels are built for CPython 3.11; set PYTHON=python3.11 (found $("$PYTHON" --version))"

# --- 1. virtual environment ---------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
h=$(inputs_hash requirements.txt requirements-ros.txt constraints.txt)
if ! stamp_ok deps "$h"; then
  say "installing pinned dependencies (PyTorch CPU, ONNX Runtime, ROS 2 Kilted wheels, ...)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -r requirements.txt -r requirements-ros.txt -c constraints.txt
  stamp_set deps "$h"
fi

# --- 2. messages --------------------------------------------------------------------------------
# The wheels' exported CMake targets name include directories of the machine that built them.
# Make those paths exist, pointing at this interpreter's headers and this venv's numpy headers.
PY_INC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NP_INC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
link_path() {  # link_path TARGET LINK
  if [ "$(readlink -f "$2" 2>/dev/null)" != "$(readlink -f "$1")" ]; then
    mkdir -p "$(dirname "$2")" 2>/dev/null \
      || die "cannot create $(dirname "$2") (needed by the ROS 2 wheels' CMake files): run 'sudo make setup' once"
    ln -sfn "$1" "$2"
  fi
}
link_path "$PY_INC" /opt/python/cp311-cp311/include/python3.11
link_path "$NP_INC" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include

h=$(inputs_hash CMakeLists.txt package.xml msg/*.msg requirements-ros.txt)
SITE=install/lib/python3.11/site-packages
if ! stamp_ok msgs "$h" || [ ! -d "$SITE/panoptic_ros/msg" ]; then
  say "building the ROS 2 messages (build/, install/)"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  rm -rf build install
  cmake -S . -B build -DCMAKE_INSTALL_PREFIX="$ROOT/install" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -Wno-dev \
    -DPython3_NumPy_INCLUDE_DIR=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include >build.log 2>&1 \
    || { tail -30 build.log >&2; die "cmake configure failed (full log: build.log)"; }
  cmake --build build -j2 >>build.log 2>&1 || { tail -30 build.log >&2; die "message build failed (build.log)"; }
  stamp_set msgs "$h"
fi
# Always refresh the install tree (cheap: unchanged files are skipped), so install/ mirrors the
# current Python sources, launch files and config as a colcon build would.
cmake --install build >install.log 2>&1 || { tail -30 install.log >&2; die "install failed (install.log)"; }

# --- 3. generated parts next to the sources -----------------------------------------------------
for f in "$SITE"/panoptic_ros/msg "$SITE"/panoptic_ros/panoptic_ros_s__*.so; do
  link_path "$ROOT/$f" "panoptic_ros/$(basename "$f")"
done

# --- 4. the package itself ----------------------------------------------------------------------
h=$(inputs_hash pyproject.toml setup.py)
if ! stamp_ok package "$h"; then
  say "installing panoptic_ros (editable) and the panoptic-ros command"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  stamp_set package "$h"
fi
say "ready: 'source scripts/env.sh' gives a shell the project's environment"
