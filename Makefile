# panoptic_ros — set-up, tests, demo. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
ENV := source scripts/env.sh &&
PYTEST_ARGS ?=

.PHONY: help setup test test-fast lint demo bench model clean lock

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

setup:  ## create .venv, install pinned dependencies, build the ROS 2 messages (idempotent)
	bash scripts/setup.sh

test: setup  ## set up, then run the whole test suite (real rclpy and DDS included)
	$(ENV) PANOPTIC_ROS_REQUIRE_ROS=1 python -m pytest $(PYTEST_ARGS)

test-fast: setup  ## the tests without those marked slow
	$(ENV) PANOPTIC_ROS_REQUIRE_ROS=1 python -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup  ## ruff over the package, tests and launch files
	$(ENV) ruff check panoptic_ros tests launch scripts && ruff format --check panoptic_ros tests launch

demo: setup  ## run the main job end to end (see README: Demo)
	$(ENV) panoptic-ros demo --out out/demo

model: setup  ## retrain the shipped model from scratch (about 25 minutes on 2 CPU cores)
	$(ENV) panoptic-ros train --no-resume --work-dir out/train --out engines/panoptic_synthetic.onnx

bench: setup  ## benchmarks; results go to docs/BENCHMARKS.md by hand, with date and machine
	$(ENV) python -m benchmarks.run

lock: setup  ## rewrite constraints.txt from the current environment
	$(ENV) { echo '# Full lock of the environment made by scripts/setup.sh (pip freeze); regenerate with `make lock`.'; \
	  pip freeze --exclude-editable | grep -v '^panoptic' ; } > constraints.txt

clean:  ## remove builds and outputs (keeps .venv)
	rm -rf build install log build.log out panoptic_ros/msg panoptic_ros/panoptic_ros_s__*.so
