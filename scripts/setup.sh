#!/usr/bin/env bash
# One-shot, idempotent set-up of panoptic_ros on a plain Debian 12 / Python 3.11 machine:
#   1. a virtual environment in .venv with the pinned dependencies (requirements*.txt, constraints.txt),
#   2. this package's ROS 2 messages built with CMake against the ROS 2 wheels (build/, install/),
#   3. links that make the generated message modules importable from the source tree,
#   4. an editable install of the package (the `panoptic-ros` command).
# Each step is skipped when its inputs have not changed since it last succeeded.
#
# ROS_DISTRO=jazzy (`make test ROS_DISTRO=jazzy`) sets up ROS 2 Jazzy beside it instead, touching
# none of the above: .venv-jazzy (requirements.txt + requirements-ros-jazzy.txt, constraints-jazzy.txt),
# messages in build-jazzy/ and install-jazzy/, and for steps 3 and 4 a copy of the source tree in
# build-jazzy/tree whose generated parts link into install-jazzy (the source tree's own links stay
# on the Kilted build). Tests against Jazzy run in that copy.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}

say() { printf '[setup] %s\n' "$*"; }
# loads (or compiles once) the numba loops of the frame path, so no test or node pays for it
WARM_KERNELS="from panoptic_ros.runtime.kernels import main; main()"
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

ROS_DISTRO=${ROS_DISTRO:-kilted}
case "$ROS_DISTRO" in
  kilted) SFX="" ;;
  jazzy) SFX="-jazzy" ;;
  *) die "ROS_DISTRO=$ROS_DISTRO: this project sets up ROS 2 kilted (the default) or jazzy" ;;
esac
VENV="$ROOT/.venv$SFX"
STAMPS="$VENV/.panoptic-stamps"
REQ_ROS="requirements-ros$SFX.txt"
CONSTRAINTS="constraints$SFX.txt"
BUILD="build$SFX"
INSTALL="install$SFX"
if [ "$ROS_DISTRO" = kilted ]; then
  BUILD_LOG=build.log INSTALL_LOG=install.log
else
  BUILD_LOG="$BUILD/cmake-build.log" INSTALL_LOG="$BUILD/cmake-install.log"
fi

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
if [ "$ROS_DISTRO" = kilted ]; then
  h=$(inputs_hash requirements.txt "$REQ_ROS" "$CONSTRAINTS")
else
  h=$(inputs_hash requirements.txt "$REQ_ROS" constraints.txt "$CONSTRAINTS")
fi
if ! stamp_ok deps "$h"; then
  say "installing pinned dependencies (PyTorch CPU, ONNX Runtime, ROS 2 ${ROS_DISTRO^} wheels, ...) into $VENV"
  if [ "$ROS_DISTRO" != kilted ]; then
    # constraints-jazzy.txt holds only the pins that differ from constraints.txt (the ROS packages):
    # the lock of the shared, non-ROS dependencies stays in one place. Lay it over constraints.txt.
    "$PYTHON" - constraints.txt "$CONSTRAINTS" >"$VENV/constraints-merged.txt" <<'PY'
import re
import sys

def pins(path):
    return [line.strip() for line in open(path) if line.strip() and not line.startswith("#")]

def name(pin):
    return re.sub(r"[-_.]+", "-", re.split(r"[=<>!~;\[ ]", pin, maxsplit=1)[0]).lower()

base, overlay = (pins(path) for path in sys.argv[1:])
overlaid = {name(pin) for pin in overlay}
print("\n".join([pin for pin in base if name(pin) not in overlaid] + overlay))
PY
    CONSTRAINTS="$VENV/constraints-merged.txt"
  fi
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -r requirements.txt -r "$REQ_ROS" -c "$CONSTRAINTS"
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
if [ "$ROS_DISTRO" = kilted ]; then
  link_path "$PY_INC" /opt/python/cp311-cp311/include/python3.11
  link_path "$NP_INC" /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
else
  # Shared with the Kilted set-up, whose links these are: made only when missing or dangling
  # (both venvs hold the same interpreter and the numpy of requirements.txt).
  for pair in "$PY_INC:/opt/python/cp311-cp311/include/python3.11" \
    "$NP_INC:/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"; do
    [ -d "${pair#*:}" ] || link_path "${pair%%:*}" "${pair#*:}"
  done
fi

h=$(inputs_hash CMakeLists.txt package.xml msg/*.msg "$REQ_ROS")
SITE="$INSTALL/lib/python3.11/site-packages"
if ! stamp_ok msgs "$h" || [ ! -d "$SITE/panoptic_ros/msg" ]; then
  say "building the ROS 2 messages ($BUILD/, $INSTALL/)"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  rm -rf "$BUILD" "$INSTALL"
  mkdir -p "$(dirname "$BUILD_LOG")"
  cmake -S . -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$ROOT/$INSTALL" \
    -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -Wno-dev \
    -DPython3_NumPy_INCLUDE_DIR=/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include >"$BUILD_LOG" 2>&1 \
    || { tail -30 "$BUILD_LOG" >&2; die "cmake configure failed (full log: $BUILD_LOG)"; }
  cmake --build "$BUILD" -j2 >>"$BUILD_LOG" 2>&1 || { tail -30 "$BUILD_LOG" >&2; die "message build failed ($BUILD_LOG)"; }
  stamp_set msgs "$h"
fi
# Always refresh the install tree (cheap: unchanged files are skipped), so install/ mirrors the
# current Python sources, launch files and config as a colcon build would.
cmake --install "$BUILD" >"$INSTALL_LOG" 2>&1 || { tail -30 "$INSTALL_LOG" >&2; die "install failed ($INSTALL_LOG)"; }

if [ "$ROS_DISTRO" != kilted ]; then
  # --- 3. (Jazzy) a copy of the source tree whose generated parts are this distro's ---------------
  # The source tree's panoptic_ros/msg and typesupport links belong to the Kilted build. The copy
  # holds what git would commit (tracked files and untracked ones not ignored), renewed each run.
  TREE="$BUILD/tree"
  command -v git >/dev/null && git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1 \
    || die "ROS_DISTRO=$ROS_DISTRO copies the source tree with git: run it in a git checkout"
  rm -rf "$TREE"
  mkdir -p "$TREE"
  git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] || [ -L "$f" ] && printf '%s\0' "$f"; done \
    | xargs -0 -r cp -P --preserve=mode,timestamps --parents -t "$TREE"
  for f in "$SITE"/panoptic_ros/msg "$SITE"/panoptic_ros/panoptic_ros_s__*.so; do
    ln -sfn "$ROOT/$f" "$TREE/panoptic_ros/$(basename "$f")"
  done
  ln -sfn "$ROOT/$INSTALL" "$TREE/install"  # what the tests call the install tree
  say "compiling the frame path's loops in the copy (numba's cache; about 5 s the first time)"
  (cd "$TREE" && PYTHONPATH="$ROOT/$TREE" "$VENV/bin/python" -c "$WARM_KERNELS") || die "compiling the loops failed"
  say "ready: ROS 2 ${ROS_DISTRO^} in $VENV, the source tree's copy with its messages in $TREE"
  exit 0
fi

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
# --- 5. the compiled loops of the frame path (numba), cached beside the sources and the install tree
say "compiling the frame path's loops (numba's cache; about 5 s per tree the first time)"
"$VENV/bin/python" -c "$WARM_KERNELS" || die "compiling the loops failed"
(cd "$INSTALL" && PYTHONPATH="$ROOT/$SITE" "$VENV/bin/python" -c "$WARM_KERNELS") || die "compiling the loops failed"
say "ready: 'source scripts/env.sh' gives a shell the project's environment"
