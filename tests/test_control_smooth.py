"""Parameter smoothing: an exponential approach evaluated from the elapsed time (a fake clock)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.control import Controls
from engine.control.smooth import approach


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_approach_is_exponential_and_exact_at_the_ends():
    assert approach(0.0, 1.0, 0.0, 0.06) == 0.0
    assert approach(0.0, 1.0, 0.06, 0.06) == pytest.approx(1 - math.exp(-1))
    assert approach(0.0, 1.0, 10.0, 0.06) == 1.0  # settled: exactly the target
    assert approach(0.0, 1.0, 0.001, 0.0) == 1.0  # tau 0: off
    assert approach(0.3, 1.0, -1.0, 0.06) == 0.3


def test_a_20hz_fader_is_smoothed_at_60fps_and_settles_on_the_target():
    """Steps of 0.1 every 50 ms would jump the image; at 60 fps the snapshots move in small steps."""
    clock = FakeClock()
    raw = Controls(smoothing=0, clock=clock)
    smooth = Controls(smoothing=0.06, clock=clock)
    for c in (raw, smooth):
        c.declare_param("speed", 0.0, 0.0, 1.0)
    raw_values, smooth_values = [], []
    frames = 120  # two seconds at 60 fps
    for frame in range(frames):
        clock.t = 100.0 + frame / 60.0
        fader_step = int((clock.t - 100.0) / 0.05)  # the fader sends a new value every 50 ms ...
        value = min(1.0, 0.1 * fader_step) if clock.t < 100.5 else 1.0  # ... ramping 0 -> 1
        for c in (raw, smooth):
            if c.value("/lj/param/speed") != value:
                c.set_param("speed", value)
        raw_values.append(raw.snapshot().params["speed"])
        smooth_values.append(smooth.snapshot().params["speed"])
    raw_steps = np.abs(np.diff(raw_values))
    smooth_steps = np.abs(np.diff(smooth_values))
    assert raw_steps.max() == pytest.approx(0.1)  # unsmoothed: the fader's steps
    assert smooth_steps.max() < 0.6 * raw_steps.max()  # smoothed: the largest frame step is much smaller
    assert np.all(np.diff(smooth_values) >= -1e-12)  # and never goes backwards on a rising fader
    assert smooth_values[-1] == 1.0  # settled exactly
    assert raw_values[-1] == 1.0


def test_smoothing_is_continuous_when_the_target_changes_midway():
    clock = FakeClock()
    c = Controls(smoothing=0.1, clock=clock)
    c.declare_param("x", 0.0)
    c.set_param("x", 1.0)
    clock.t += 0.1
    mid = c.snapshot().params["x"]
    assert mid == pytest.approx(1 - math.exp(-1))
    c.set_param("x", 0.0)  # reverse: starts from where it is, not from 1.0
    assert c.snapshot().params["x"] == pytest.approx(mid)
    clock.t += 0.1
    assert c.snapshot().params["x"] == pytest.approx(mid * math.exp(-1))
    # reading does not change the value (a pure function of time)
    assert c.snapshot().params["x"] == c.snapshot().params["x"]


def test_per_parameter_time_constant_and_unsmoothed_sets():
    clock = FakeClock()
    c = Controls(smoothing=0.06, clock=clock)
    c.declare_param("fast", 0.0, smooth=0)
    c.declare_param("slow", 0.0, smooth=1.0)
    c.declare_param("jump", 0.0)
    c.set_param("fast", 1.0)
    c.set_param("slow", 1.0)
    c.set_param("jump", 1.0, smooth=False)
    clock.t += 0.06
    p = c.snapshot().params
    assert p["fast"] == 1.0 and p["jump"] == 1.0
    assert p["slow"] == pytest.approx(1 - math.exp(-0.06))
    assert c.value("/lj/param/slow") == 1.0  # queries answer the value set (the target)


def test_first_value_of_an_undeclared_param_is_not_smoothed():
    clock = FakeClock()
    c = Controls(clock=clock)
    c.set_param("new", 0.7)
    assert c.snapshot().params["new"] == 0.7
