"""Inference backends behind one interface (:class:`~panoptic_ros.backends.base.Backend`).

Use :func:`~panoptic_ros.backends.registry.create_backend` with a name from
:data:`~panoptic_ros.backends.registry.BACKENDS` or ``"auto"``.
"""
