"""Setuptools shim: the project is described in pyproject.toml.

Kept for tools that still call ``setup.py`` (older colcon/pip workflows). In a ROS workspace the
package is built by CMake (``package.xml`` declares ``ament_cmake``), which also generates the messages.
"""

from setuptools import setup

setup()
