"""The resolution budget: render below the model's size when the generator cannot hold the frame
rate, and say so once when it cannot be helped.

The policy is a pure function of the measured generation time (:func:`choose_scale`); the
:class:`ResolutionBudget` controller around it keeps the moving average, waits for a few frames
after every change (a new size costs a warm-up and, on CUDA, a graph capture) and keeps at least
``cooldown`` frames between changes, so the size does not flicker. Cost is modelled as
proportional to the pixel count, i.e. to ``scale ** 2``.

The display does not care: the render stage samples the generator's frame with normalised
coordinates and linear filtering, so a smaller frame is upscaled by the first shader pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger("lj.generator")

SCALES = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)  # of the model's size, per axis
HIGH = 0.9     # over this share of the frame budget: go down
TARGET = 0.7   # going down, aim for this share
LOW = 0.55     # the next size up must be predicted under this share to go up (hysteresis)
HELPED = 0.8   # a step down must bring the time under this share of what it was, or is undone


def choose_scale(gen_s: float, scale: float, budget_s: float,
                 scales: tuple[float, ...] = SCALES) -> float:
    """The scale to render at next, given ``gen_s`` seconds per frame measured at ``scale``.

    Over ``HIGH`` of ``budget_s``: the largest smaller scale predicted (cost ~ scale²) to fit in
    ``TARGET`` of it, else the smallest scale. Under: one step up if that step is predicted to
    stay under ``LOW``. Otherwise ``scale`` itself. ``scales`` is sorted largest first.
    """
    if gen_s <= 0 or budget_s <= 0:
        return scale
    if gen_s > HIGH * budget_s:
        lower = [s for s in scales if s < scale]
        for s in lower:
            if gen_s * (s / scale) ** 2 <= TARGET * budget_s:
                return s
        return lower[-1] if lower else scale
    higher = [s for s in scales if s > scale]
    if higher:
        up = higher[-1]  # the next step up
        if gen_s * (up / scale) ** 2 <= LOW * budget_s:
            return up
    return scale


def scaled_size(resolution: tuple[int, int], scale: float, multiple: int = 8,
                minimum: int = 32) -> tuple[int, int]:
    """``(h, w)`` times ``scale``, rounded to ``multiple`` pixels and at least ``minimum``."""
    if scale >= 1.0:
        return tuple(resolution)

    def one(n: int) -> int:
        return max(min(n, minimum), int(round(n * scale / multiple)) * multiple)
    return one(resolution[0]), one(resolution[1])


@dataclass
class ResolutionBudget:
    """Decides the generator's internal resolution from measured generation times.

    Call :meth:`update` once per generated frame with its time; it returns the new internal size
    when one should be used, else None. With ``resizable=False`` it never changes the size but
    reports once (log warning and :attr:`note`) when the model cannot hold ``target_fps``.
    """

    resolution: tuple[int, int]           # the model's own (h, w)
    target_fps: float = 60.0
    resizable: bool = True
    name: str = "generator"
    alpha: float = 0.1                    # EMA weight of the newest frame
    settle: int = 8                       # frames ignored after a change (warm-up, capture)
    cooldown: int = 45                    # frames between changes
    scale: float = 1.0
    ema: float = 0.0
    note: str | None = None               # the one-line report, once made
    _frames: int = field(default=0, repr=False)
    _since_change: int = field(default=0, repr=False)
    _slow: int = field(default=0, repr=False)
    _floor: bool = field(default=False, repr=False)
    _check: tuple[float, float] | None = field(default=None, repr=False)

    @property
    def budget_s(self) -> float:
        return 1.0 / self.target_fps

    @property
    def size(self) -> tuple[int, int]:
        return scaled_size(self.resolution, self.scale)

    def update(self, gen_s: float) -> tuple[int, int] | None:
        self._since_change += 1
        if self._since_change <= self.settle or not gen_s > 0:
            return None
        self._frames += 1
        self.ema = gen_s if self._frames == 1 else self.ema + self.alpha * (gen_s - self.ema)
        if self._frames < 10:
            return None
        if self._check is not None:
            # The last step down must have paid: a generator bound by something other than its
            # pixel count (launch overhead, a CPU shared with the renderer) gets its size back
            # and keeps it; the report below then says what it holds.
            prev_scale, prev_ema = self._check
            self._check = None
            if self.ema > HELPED * prev_ema:
                h, w = self.size
                log.info("resolution budget: %dx%d takes %.1f ms, no faster than %.1f ms at the "
                         "larger size; staying at that size", w, h, self.ema * 1e3, prev_ema * 1e3)
                self.resizable = False
                return self._change(prev_scale)
        if not self.resizable:
            self._slow = self._slow + 1 if self.ema > self.budget_s else 0
            if self._slow >= 30 and self.note is None:
                h, w = self.size
                self.note = (f"{self.name} holds {1.0 / self.ema:.0f} fps at {w}x{h}, "
                             f"target {self.target_fps:.0f}")
                log.warning("%s (frames are held while it works)", self.note)
            return None
        if self._since_change <= self.cooldown and self.scale != 1.0 and self.ema <= HIGH * self.budget_s:
            return None  # going up waits for the cooldown; going down does not
        new = choose_scale(self.ema, self.scale, self.budget_s)
        if new == self.scale == SCALES[-1] and self.ema > self.budget_s and not self._floor:
            self._floor = True
            h, w = self.size
            self.note = (f"{self.name} holds {1.0 / self.ema:.0f} fps at {w}x{h} (its smallest "
                         f"budget size), target {self.target_fps:.0f}")
            log.warning("%s", self.note)
        if new == self.scale or scaled_size(self.resolution, new) == self.size:
            self.scale = new
            return None
        if new < self.scale:
            self._check = (self.scale, self.ema)
        return self._change(new)

    def _change(self, new: float) -> tuple[int, int]:
        old = self.size
        self.scale, self._since_change, self._frames, self.ema = new, 0, 0, 0.0
        h, w = self.size
        if new < 1.0 and self.resizable:
            self.note = (f"{self.name} at {w}x{h} (model {self.resolution[1]}x{self.resolution[0]}) "
                         f"to hold {self.target_fps:.0f} fps")
        else:
            self.note = None
        log.info("resolution budget: %dx%d -> %dx%d", old[1], old[0], w, h)
        return self.size
