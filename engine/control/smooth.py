"""Parameter smoothing: a pure exponential approach, evaluated from the elapsed time.

A fader that sends 20 values a second would step the image 20 times a second. Instead of a
stateful filter that must be ticked, each parameter remembers where it started (``start``, at time
``t0``) and where it is going (``target``); its value at any later time is

    value(t) = target + (start - target) * exp(-(t - t0) / tau)

so it can be read at any instant (a snapshot, a query) with the same answer, and it does not
depend on how often it is read. When a new target arrives, the value reached at that moment
becomes the new start: the curve is continuous, never a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: After this many time constants the value is taken to be exactly the target (exp(-12) ~ 6e-6).
SETTLE_TAUS = 12.0


def approach(start: float, target: float, elapsed: float, tau: float) -> float:
    """The value ``elapsed`` seconds after leaving ``start`` towards ``target`` (time constant ``tau``).

    ``tau <= 0`` means no smoothing (the target at once); a negative ``elapsed`` gives ``start``.
    """
    if tau <= 0.0 or elapsed >= SETTLE_TAUS * tau:
        return target
    if elapsed <= 0.0:
        return start
    return target + (start - target) * math.exp(-elapsed / tau)


@dataclass
class Smoothed:
    """One smoothed value: ``start`` at ``t0`` heading for ``target`` with time constant ``tau``."""

    target: float
    start: float
    t0: float
    tau: float

    def value(self, now: float) -> float:
        """The value at time ``now`` (same clock as ``t0``)."""
        return approach(self.start, self.target, now - self.t0, self.tau)

    def retarget(self, target: float, now: float) -> None:
        """Head for ``target`` from wherever the value is at ``now``."""
        self.start = self.value(now)
        self.t0 = now
        self.target = target

    def jump(self, value: float, now: float) -> None:
        """Be ``value`` at once (no smoothing)."""
        self.start = self.target = value
        self.t0 = now
