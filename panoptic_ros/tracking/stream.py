"""Continuity of a camera stream: the two events after which earlier frames say nothing about the next.

A stamp earlier than the previous frame's (a rosbag played in a loop, a restarted clock) or a frame of
another size (the driver changed resolution) breaks a stream: tracks, velocities and masks of the
frames before no longer apply. :class:`StreamCheck` is the one place that notices; the tracker resets
itself on these events and the frame engine reports them (also when tracking is off).
"""

from __future__ import annotations

#: The events of :meth:`StreamCheck.observe`, in the order they are reported.
RESOLUTION_CHANGE = "resolution_change"
TIME_JUMP_BACK = "time_jump_back"
EVENTS = (RESOLUTION_CHANGE, TIME_JUMP_BACK)


class StreamCheck:
    """Remembers a stream's last frame size and stamp and reports what breaks continuity."""

    __slots__ = ("size", "stamp_ns")

    def __init__(self) -> None:
        self.size: tuple[int, int] | None = None
        self.stamp_ns: int | None = None

    def observe(self, size: tuple[int, int], stamp_ns: int) -> tuple[str, ...]:
        """Take the next frame's ``(height, width)`` and stamp; return the events it causes (empty
        for a continuous frame, and for the first frame). A repeated stamp is continuous."""
        events = []
        if self.size is not None and size != self.size:
            events.append(RESOLUTION_CHANGE)
        if self.stamp_ns is not None and stamp_ns < self.stamp_ns:
            events.append(TIME_JUMP_BACK)
        self.size, self.stamp_ns = size, stamp_ns
        return tuple(events)

    def forget(self) -> None:
        """Start over: the next frame is a first frame."""
        self.size = self.stamp_ns = None
