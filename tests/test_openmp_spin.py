"""Importing the package sets PyTorch's OpenMP spin (``GOMP_SPINCOUNT``, read by libgomp when it loads)
before PyTorch is imported, and keeps a value the environment already has. Fresh interpreters: the
variable only counts before libgomp loads."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import os, sys
import panoptic_ros
assert "torch" not in sys.modules  # the package sets it before anything imports PyTorch
import panoptic_ros.runtime  # the engine's import of PyTorch comes after
print(os.environ["GOMP_SPINCOUNT"], panoptic_ros.GOMP_SPINCOUNT)
"""


def _spin(env: dict[str, str]) -> list[str]:
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_package_sets_a_short_openmp_spin_unless_the_environment_has_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    value, default = _spin(env)
    assert value == default and int(default) < 300_000  # shorter than libgomp's own default
    assert _spin({**env, "GOMP_SPINCOUNT": "1234"})[0] == "1234"
