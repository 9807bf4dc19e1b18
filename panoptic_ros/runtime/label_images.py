"""The label images a frame publishes, expanded from the model's resolution to the camera's.

The fused label maps come to the host at the model's resolution; the ``semantic`` and ``instance_ids``
images are those maps expanded to the camera's size (nearest, by the frame's
:class:`~panoptic_ros.core.segments.PixelFrame`). At 1920x1080 that writes 10 MB a frame, more than
any other pass after the network, both images in one compiled call that releases the GIL (each map
cast to its image's type as it is written): large images are expanded on
the engine's side thread (:mod:`~panoptic_ros.runtime.side_thread`) while the serving thread makes the
instance table and the overlay; small ones on the serving thread, where handing them over would cost
more than it saves.
"""

from __future__ import annotations

import numpy as np

from panoptic_ros.core.labels import LabelSet
from panoptic_ros.core.resample_cpu import expand_two
from panoptic_ros.core.segments import PixelFrame
from panoptic_ros.runtime.side_thread import Pending, SideThread

#: Bytes of label images a frame expands from which they are made on the side thread: at 640x480
#: (1.5 MB) handing them over cost more than it saved on the 2-core development machine, at 1920x1080
#: (10 MB) it saved about an eighth of the work after the network.
SIDE_BYTES = 4 << 20

LabelImagePair = tuple[np.ndarray | None, np.ndarray | None]
#: The instance id image's type (``32SC1``).
_ID_TYPE = np.dtype(np.int32)


class LabelImages:
    """Expands a frame's host label maps to its camera's size.

    Args:
        label_set: the model's labels (the semantic image is 8-bit where every category id and the
            void value fit, else 16-bit).
        side_thread: expand large images on a side thread; False: always on the calling thread.
    """

    def __init__(self, label_set: LabelSet, *, side_thread: bool = True) -> None:
        self.semantic_dtype = np.dtype(np.uint8 if label_set.void_semantic <= 255 else np.uint16)
        self.side = SideThread(enabled=side_thread)

    def start(
        self,
        frame: PixelFrame,
        semantic: np.ndarray | None,
        track_ids: np.ndarray | None,
        *,
        warm_up: bool = False,
    ) -> Pending[LabelImagePair]:
        """Start expanding the ``[h, w]`` host maps given (None: that image is not wanted): category ids
        and instance (track) ids. ``result()`` of what is returned gives ``(semantic [H, W] in
        :attr:`semantic_dtype`, ids [H, W] int32)``, None where not wanted. The maps must not change
        until then. ``warm_up``: on the side thread whatever the size (a warm-up frame: the thread is
        started, and its first passes paid for, before the first camera frame)."""
        height, width = frame.rows.host_index.size, frame.cols.host_index.size
        pixel_bytes = (semantic is not None) * self.semantic_dtype.itemsize + (track_ids is not None) * 4
        beside = warm_up or height * width * pixel_bytes >= SIDE_BYTES
        return self.side.submit(self._expand, frame, semantic, track_ids, beside=beside)

    def _expand(
        self, frame: PixelFrame, semantic: np.ndarray | None, track_ids: np.ndarray | None
    ) -> LabelImagePair:
        """Both images in one compiled call (:func:`~panoptic_ros.core.resample_cpu.expand_two`: the GIL
        taken once, each map cast as it is written); frames without pixels, or maps that are not
        ``[h, w]``, by :meth:`PixelFrame.expand <panoptic_ros.core.segments.PixelFrame.expand>`.

        Raises:
            IndexError: a map smaller than the one the frame was made for.
        """
        wanted = ((semantic, self.semantic_dtype), (track_ids, _ID_TYPE))
        given = [labels for labels, _ in wanted if labels is not None]
        rows, cols = frame.rows.host_index, frame.cols.host_index
        if not given or not rows.size or not cols.size or any(labels.ndim != 2 for labels in given):
            first, second = (
                None if labels is None else frame.expand(labels).astype(dtype, copy=False)
                for labels, dtype in wanted
            )
            return first, second
        for labels in given:
            # the positions are nondecreasing: the first and last bound them (the gather does not check)
            if rows[0] < 0 or cols[0] < 0 or rows[-1] >= labels.shape[0] or cols[-1] >= labels.shape[1]:
                raise IndexError(
                    f"the frame copies map pixels from ({rows[0]}, {cols[0]}) up to ({rows[-1]}, "
                    f"{cols[-1]}) of a {labels.shape} map"
                )
        # an image not wanted: no pixels, and the other map read in its place (not at all)
        images = [np.empty((rows.size, cols.size) if m is not None else (0, 0), dtype=t) for m, t in wanted]
        maps = [np.ascontiguousarray(m if m is not None else given[0]) for m, _ in wanted]
        expand_two(images[0], maps[0], images[1], maps[1], rows, cols)
        return (images[0] if semantic is not None else None, images[1] if track_ids is not None else None)

    def close(self) -> None:
        """End the side thread (after the images started)."""
        self.side.close()
