"""Helpers shared by the tests (not fixtures: plain code the tests import)."""

import threading
import time

import numpy as np


class PacedSource:
    """Feeds a song into a ring at wall-clock speed, with no sound card: the OSC and window tests
    are about control and display, so their audio clock must not depend on a sound server."""

    def __init__(self, samples, sr):
        from engine.audio.ring import RingBuffer

        self.mono = samples.mean(axis=1).astype(np.float32)
        self.ring = RingBuffer(sr * 4)
        self.sample_rate = sr
        self.finished = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    @property
    def position(self):
        return self.ring.total_written

    def _feed(self):
        t0 = time.monotonic()
        while not self._stop.is_set() and self.ring.total_written < len(self.mono):
            due = min(len(self.mono), int((time.monotonic() - t0) * self.sample_rate))
            if due > self.ring.total_written:
                self.ring.write(self.mono[self.ring.total_written:due])
            self._stop.wait(0.005)
        self.finished = self.ring.total_written >= len(self.mono)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(5)


#: A small valid mapping (format with ``name=``): three keyframes, a feedback chain, one route
#: from ``level`` to the feedback amount at line 10/11 (``from``/``to``).
SMALL_MAPPING = """[meta]
name = "{name}"
[latent]
keyframes = {{ seeds = [1, 2, 3] }}
walk = {{ seconds_per_key = 2.0 }}
[shaders]
chain = ["feedback"]
[[route]]
from = "level"
to = "shader.feedback.amount"
"""


def free_port(kind=None) -> int:
    """A port on 127.0.0.1 that is free right now (UDP by default, ``socket.SOCK_STREAM`` for TCP)."""
    import socket

    s = socket.socket(socket.AF_INET, kind or socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, what: str, timeout: float = 5.0) -> None:
    """Poll ``pred`` until true; fail the test with ``what`` after ``timeout`` seconds (a bound
    for slow machines, never asserted as a duration)."""
    import pytest

    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


def capture_device():
    """None when PortAudio's default input is PulseAudio's (the tests' own server), else the
    device named "pulse"."""
    import sounddevice as sd

    default = sd.query_devices(kind="input")["name"].lower()
    return None if default in ("default", "pulse") or "pulse" in default else "pulse"

