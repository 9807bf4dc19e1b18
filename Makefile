# panoptic_ros — set-up, tests, demo. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := source scripts/env.sh &&
PYTEST_ARGS ?=

# The ROS 2 distribution: kilted (the default) or jazzy, chosen on the command line
# (`make test ROS_DISTRO=jazzy`). A ROS_DISTRO exported by a sourced ROS install (/opt/ros/*/setup.bash)
# does not change what plain `make test` does.
ifneq ($(origin ROS_DISTRO),command line)
ROS_DISTRO := kilted
endif
ifeq ($(filter kilted jazzy,$(ROS_DISTRO)),)
$(error ROS_DISTRO=$(ROS_DISTRO): this project sets up ROS 2 kilted (the default) or jazzy)
endif
export ROS_DISTRO
# Against Jazzy, the tests run in a copy of the source tree whose generated message modules are
# Jazzy's (build-jazzy/tree, renewed by scripts/setup.sh), on a smoke selection of the ROS tests:
# which distro is in use, DDS between processes, message conversions, the node, the install tree, the
# bag recorder (its wait set uses rclpy's lower-level API).
JAZZY_TREE := build-jazzy/tree
JAZZY_TESTS ?= tests/ros/test_ros_distro.py tests/ros/test_dds.py tests/ros/test_conversions.py \
  tests/ros/test_node.py tests/test_install_tree.py tests/ros/test_bag_recorder.py \
  tests/ros/test_node_qos.py::test_frames_that_cannot_arrive_are_reported_once_with_the_cause \
  tests/ros/test_node_qos.py::test_incompatible_publisher_is_reported
ifneq ($(ROS_DISTRO),kilted)
ifneq ($(filter demo model bench,$(MAKECMDGOALS)),)
$(error ROS_DISTRO=$(ROS_DISTRO) is for the tests (make test ROS_DISTRO=$(ROS_DISTRO)); demo, model and bench use Kilted)
endif
endif

.PHONY: help setup test test-fast lint demo bench model clean lock

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12
	@echo 'ROS_DISTRO=jazzy (setup, test, test-fast, lock): the same against ROS 2 Jazzy in .venv-jazzy,'
	@echo '            build-jazzy/, install-jazzy/; test runs a smoke selection of the ROS tests (JAZZY_TESTS)'

setup:  ## create .venv, install pinned dependencies, build the ROS 2 messages (idempotent)
	bash scripts/setup.sh

# `make test` also runs the Jazzy smoke selection after the Kilted suite; JAZZY=0 leaves it out.
JAZZY ?= 1

ifeq ($(ROS_DISTRO),kilted)
test: setup  ## set up, then the whole test suite (real rclpy and DDS) on Kilted and the ROS smoke tests on Jazzy
	$(ENV) PANOPTIC_ROS_REQUIRE_ROS=1 python -m pytest $(PYTEST_ARGS)
ifeq ($(JAZZY),1)
	$(MAKE) --no-print-directory test ROS_DISTRO=jazzy PYTEST_ARGS=
endif

test-fast: setup  ## the tests without those marked slow
	$(ENV) PANOPTIC_ROS_REQUIRE_ROS=1 python -m pytest -m "not slow" $(PYTEST_ARGS)
else
test: setup
	$(ENV) cd $(JAZZY_TREE) && python -c 'import importlib.metadata as m; print("ROS 2 $(ROS_DISTRO): ros-rclpy", m.version("ros-rclpy"))' \
	  && PYTHONPATH=$$PWD PANOPTIC_ROS_REQUIRE_ROS=1 python -m pytest -p no:cacheprovider $(JAZZY_TESTS) $(PYTEST_ARGS)

test-fast: setup
	$(ENV) cd $(JAZZY_TREE) && PYTHONPATH=$$PWD PANOPTIC_ROS_REQUIRE_ROS=1 python -m pytest -p no:cacheprovider -m "not slow" $(JAZZY_TESTS) $(PYTEST_ARGS)
endif

lint: setup  ## ruff over the package, tests and launch files
	$(ENV) ruff check panoptic_ros tests launch scripts && ruff format --check panoptic_ros tests launch

demo: setup  ## run the main job end to end (see README: Demo)
	$(ENV) panoptic-ros demo --out out/demo

model: setup  ## retrain the shipped model from scratch (about 36 minutes on 2 CPU cores with bfloat16), then its INT8 companion
	$(ENV) panoptic-ros train --no-resume --work-dir out/train --out engines/panoptic_synthetic.onnx
	$(ENV) panoptic-ros quantize engines/panoptic_synthetic.onnx --calib synthetic

bench: setup  ## benchmarks; results go to docs/BENCHMARKS.md by hand, with date and machine
	$(ENV) python -m benchmarks.run

ifeq ($(ROS_DISTRO),kilted)
lock: setup  ## rewrite constraints.txt from the current environment
	$(ENV) { echo '# Full lock of the environment made by scripts/setup.sh (pip freeze); regenerate with `make lock`.'; \
	  pip freeze --exclude-editable | grep -v '^panoptic' ; } > constraints.txt
else
lock: setup
	$(ENV) { echo '# Lock of the ROS 2 Jazzy environment (.venv-jazzy, pip freeze): only the pins that differ from constraints.txt,'; \
	  echo '# which scripts/setup.sh lays over it. Regenerate with `make lock ROS_DISTRO=jazzy`.'; \
	  pip freeze --exclude-editable | grep -v '^panoptic' | { grep -vxF -f constraints.txt || true; } ; } > constraints-jazzy.txt
endif

clean:  ## remove builds and outputs, Jazzy's too (keeps .venv and .venv-jazzy)
	rm -rf build install log build.log out panoptic_ros/msg panoptic_ros/panoptic_ros_s__*.so build-jazzy install-jazzy
