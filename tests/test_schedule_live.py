"""The schedule in the live loop: outside the hours the screen is black, nothing is generated and
the soundtrack is silent; at the start of the hours it wakes by itself.

The loop's clock for the schedule is given (a mutable datetime), so the test moves time instead of
waiting for it. Real parts: the live loop, PulseAudio playback, a GLFW window on Xvfb and its pixels
read back from the X server with ``import`` (ImageMagick).
"""

import io
import shutil
import subprocess
import threading
from datetime import datetime

import numpy as np
import pytest
from PIL import Image

from engine.audio.demo import demo_song
from engine.generators.cppn import CPPNGenerator
from engine.health import Health
from engine.live import LiveOptions, StopFlag, run_live
from engine.schedule import Schedule
from support import wait_for


class Counting(CPPNGenerator):
    calls = 0

    def synthesize(self, w_plus, noise_strength=0.0, params=None):
        Counting.calls += 1
        return super().synthesize(w_plus, noise_strength)


class Clock:
    def __init__(self, when):
        self.now = when

    def __call__(self):
        return self.now


def published(health, n=3):
    """Wait until the loop has published its state ``n`` more times (about a second each)."""
    seen = []

    def more():
        up = health.snapshot().get("uptime")
        if up is not None and (not seen or up != seen[-1]):
            seen.append(up)
        return len(seen) > n
    wait_for(more, f"{n} state updates", 60)


@pytest.mark.audio_server
def test_outside_the_hours_nothing_is_generated_or_played_and_it_wakes_on_time(
        pulse_sink, monkeypatch):
    import engine.session
    from engine.audio.sources import FilePlayer

    monkeypatch.setattr(engine.session, "load_generator", lambda name, size: Counting(size))
    Counting.calls = 0
    samples, sr, _ = demo_song(seconds=20.0)
    source = FilePlayer(samples, sr, loop=True)
    clock = Clock(datetime(2026, 11, 23, 9, 0))            # Monday 09:00: closed
    health = Health()
    opts = LiveOptions(size=32, headless=True, osc_port=None, health_monitor=health, max_seconds=300,
                       schedule=Schedule("mon-fri 10:00-18:00"), clock=clock)
    stop = StopFlag()
    out = {}
    loop = threading.Thread(target=lambda: out.setdefault("stats", run_live(source, opts, stop)))
    loop.start()
    try:
        wait_for(lambda: health.snapshot().get("sleeping") == 1, "the loop to fall asleep", 60)
        calls, played = Counting.calls, source.position
        published(health)
        snap = health.snapshot()
        assert snap["frames"] == 0 and snap["status"] == "sleeping"
        assert Counting.calls == calls, "nothing generated while closed"
        assert source.position == played, "the soundtrack is silent while closed"

        clock.now = datetime(2026, 11, 23, 10, 0)          # opening time
        wait_for(lambda: health.snapshot().get("frames", 0) > 20, "the show to wake", 60)
        assert health.snapshot()["sleeping"] == 0 and Counting.calls > calls
        assert source.position > played, "the soundtrack plays again"

        clock.now = datetime(2026, 11, 23, 18, 0)          # closing time
        wait_for(lambda: health.snapshot().get("sleeping") == 1, "the loop to sleep again", 60)
        frames, calls, played = health.snapshot()["frames"], Counting.calls, source.position
        published(health)
        assert health.snapshot()["frames"] == frames and Counting.calls == calls
        assert source.position == played
    finally:
        stop()
        loop.join(60)
    assert "stats" in out and not loop.is_alive()


class Restartable:
    """support.PacedSource that can be stopped and started again (as the real sources can)."""

    def __init__(self, samples, sr):
        from support import PacedSource

        self.samples, self.sample_rate = samples, sr
        self.inner = PacedSource(samples, sr)
        self.ring = self.inner.ring

    @property
    def position(self):
        return self.ring.total_written

    def start(self):
        from support import PacedSource

        if self.inner is None:
            self.inner = PacedSource(self.samples, self.sample_rate)
            self.inner.ring = self.ring
        self.inner.start()

    def stop(self):
        if self.inner is not None:
            self.inner.stop()
            self.inner = None


def screen(display) -> np.ndarray:
    png = subprocess.run(["import", "-display", display, "-window", "root", "png:-"],
                         capture_output=True, check=True, timeout=30).stdout
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


@pytest.mark.window
def test_the_screen_is_black_while_closed(xvfb_display):
    """Fullscreen on Xvfb: the whole screen is black outside the hours and shows the picture
    inside them (read back from the X server, as a visitor would see it)."""
    if shutil.which("import") is None:
        pytest.skip("ImageMagick's import is not installed")
    samples, sr, _ = demo_song(seconds=60.0)
    clock = Clock(datetime(2026, 11, 23, 9, 0))
    health = Health()
    opts = LiveOptions(size=32, fullscreen=True, vsync=False, osc_port=None, health_monitor=health,
                       max_seconds=120, schedule=Schedule("10:00-18:00"), clock=clock)
    stop = StopFlag()
    shots = {}

    def drive():
        try:
            published(health, 2)
            shots["closed"] = screen(xvfb_display)
            clock.now = datetime(2026, 11, 23, 12, 0)
            wait_for(lambda: health.snapshot().get("frames", 0) > 30, "the show to wake", 60)
            shots["open"] = screen(xvfb_display)
            clock.now = datetime(2026, 11, 23, 20, 0)
            wait_for(lambda: health.snapshot().get("sleeping") == 1, "closing", 60)
            published(health, 1)
            shots["closed_again"] = screen(xvfb_display)
        finally:
            stop()

    driver = threading.Thread(target=drive)
    driver.start()
    run_live(Restartable(samples, sr), opts, stop)  # GL and the window on this (main) thread
    driver.join(60)
    assert set(shots) == {"closed", "open", "closed_again"}, "the driver did not finish"
    assert shots["closed"].max() == 0, "black before opening time"
    assert shots["open"].std() > 10, "the picture while open"
    assert shots["closed_again"].max() == 0, "black again after closing time"
