"""A preallocated mono ring buffer between the audio callback and the frame loop.

The audio callback (the single writer) copies each block into the ring with :meth:`RingBuffer.write`;
the frame loop (the single reader) copies whole hops back out with :meth:`RingBuffer.read` or, more
conveniently, with a :class:`HopReader`. Samples are addressed by their absolute index on the
source's sample clock (0 = the first sample ever written), so ``total_written`` doubles as the
playback/capture position.

No locks are taken: the writer announces how far it is about to write (``_reserved``) before it
copies and publishes ``total_written`` after, and the reader checks both around its copy, so a read
that raced with an overwrite is reported as failed instead of returning torn data.
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Mono float32 ring buffer with a single writer and a single reader.

    Parameters
    ----------
    capacity : int
        Number of samples kept (e.g. ``10 * sr`` for ten seconds). Allocated once, here.
    """

    def __init__(self, capacity: int):
        capacity = int(capacity)
        if capacity <= 0:
            raise ValueError(f"ring capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._reserved = 0       # the writer may be overwriting samples below _reserved - capacity
        self.total_written = 0   # samples ever written: the source's sample clock

    def write(self, block: np.ndarray) -> None:
        """Append a 1-D block of samples (audio thread: copies only, never allocates).

        A block longer than the capacity keeps only its last ``capacity`` samples, but
        ``total_written`` still advances by the full length.
        """
        n = block.shape[0]
        if n == 0:
            return
        cap = self.capacity
        start = self.total_written
        self._reserved = start + n
        if n > cap:
            block = block[n - cap:]
            start += n - cap
            n = cap
        i = start % cap
        first = min(n, cap - i)
        self._buf[i:i + first] = block[:first]
        if first < n:
            self._buf[:n - first] = block[first:]
        self.total_written = self._reserved

    def read(self, start: int, out: np.ndarray) -> bool:
        """Copy samples ``[start, start + len(out))`` into ``out`` (float32, 1-D).

        Returns
        -------
        bool
            True on success. False (``out`` then holds garbage) if any of the samples have not
            been written yet or have already been overwritten.
        """
        n = out.shape[0]
        cap = self.capacity
        if n > cap or start < 0 or start + n > self.total_written:
            return False
        if start < self._reserved - cap:
            return False
        i = start % cap
        first = min(n, cap - i)
        out[:first] = self._buf[i:i + first]
        if first < n:
            out[first:] = self._buf[:n - first]
        # The writer may have started overwriting while we copied.
        return start >= self._reserved - cap

    def oldest(self) -> int:
        """Index of the oldest sample that can still be read."""
        return max(0, self._reserved - self.capacity)


class HopReader:
    """Drains complete hops from a :class:`RingBuffer` in order (frame-loop side).

    Each hop is copied into one preallocated array, so the caller must use (or copy) it before
    asking for the next. Hops depend only on the ring's content, never on how often the caller
    drains, which keeps the analysis independent of the frame rate.

    Parameters
    ----------
    ring : RingBuffer
        The ring to read from.
    hop : int
        Samples per hop (512 by default in the engine).
    start : int
        Absolute sample index of the first hop.

    Attributes
    ----------
    next_start : int
        Absolute index of the first sample of the next hop to be returned.
    dropped : int
        Samples skipped because the reader fell more than a ring's length behind.
    """

    def __init__(self, ring: RingBuffer, hop: int = 512, start: int = 0):
        self.ring = ring
        self.hop = int(hop)
        self.next_start = int(start)
        self.dropped = 0
        self._out = np.zeros(self.hop, dtype=np.float32)

    def hops(self, upto: int | None = None):
        """Yield every complete hop that ends at or before ``upto`` (default: all written).

        If the reader fell so far behind that the next hop was overwritten, it skips ahead to the
        oldest whole hop still in the ring and adds the gap to ``dropped``.
        """
        return self.blocks(upto, 1)

    def blocks(self, upto: int | None = None, max_hops: int = 32):
        """As :meth:`hops`, but several consecutive hops at a time: each block holds up to
        ``max_hops`` whole hops (``k * hop`` samples), in one array reused between blocks."""
        if self._out.shape[0] < max_hops * self.hop:
            self._out = np.zeros(max_hops * self.hop, dtype=np.float32)
        hop = self.hop
        limit = self.ring.total_written if upto is None else min(int(upto), self.ring.total_written)
        while self.next_start + hop <= limit:
            k = min(max_hops, (limit - self.next_start) // hop)
            out = self._out[:k * hop]
            if not self.ring.read(self.next_start, out):
                oldest = self.ring.oldest()
                if oldest <= self.next_start:  # not yet written: cannot happen below limit
                    return
                skip = -(-(oldest - self.next_start) // hop) * hop
                self.dropped += skip
                self.next_start += skip
                continue
            self.next_start += k * hop
            yield out
