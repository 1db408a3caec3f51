"""Preallocated frame buffers handed from the frame loop to a worker thread (recorder, outputs)."""

from __future__ import annotations

import queue

import numpy as np


class FramePool:
    """``count`` uint8 ``[h, w, 3]`` buffers. The frame loop :meth:`take` s one and fills it with the
    frame on show, or gets None when every buffer is still with the worker (the caller counts the
    skip: it never waits); the worker :meth:`give` s each back when done with it."""

    def __init__(self, size: tuple[int, int], count: int):
        w, h = int(size[0]), int(size[1])
        self._free: queue.Queue = queue.Queue()
        for _ in range(max(1, int(count))):
            self._free.put(np.empty((h, w, 3), np.uint8))

    def take(self, frame) -> np.ndarray | None:
        """A free buffer holding ``frame`` (a Renderer, read back here, or an [h, w, 3] uint8
        array), or None when none is free."""
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            return None
        if hasattr(frame, "read"):
            frame.read(out=buf)
        else:
            np.copyto(buf, frame)
        return buf

    def give(self, buf: np.ndarray) -> None:
        self._free.put(buf)
