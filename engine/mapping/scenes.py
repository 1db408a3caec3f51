"""Scenes: several compiled mappings in one file, switched with a crossfade.

A :class:`SceneSet` has the interface of a :class:`~engine.mapping.compile.Mapping` (the session
cannot tell them apart). Every scene is compiled when the file is (on the loader thread), so a
switch costs one state hand-over (:meth:`Mapping.state` -> :meth:`Mapping.restore`: the walk
position, audio time, beat, motion drift and held values carry over) and never compiles.

During a crossfade both scenes step every hop and :func:`mix_frames` blends their
:class:`FrameParams`: ``w_plus`` row by row by slerp around ``w_avg`` (or lerp), truncation,
noise (float or per layer), shader uniforms and generator parameters linearly. The weight is a
smoothstep of the elapsed share of the fade, so the picture starts and lands without a kink.

A scene changes on :meth:`SceneSet.switch` (OSC, keys, the session), on the rising edge of its
``switch_on`` expression through 0.5 (e.g. ``"drop"``), or at a ``[[cue]]`` time (audio clock).
A change asked for during a crossfade waits until that crossfade ends (the latest request wins).
"""

from __future__ import annotations

import logging
import math

import numpy as np

from engine.cues import CueTimer
from engine.frame import FrameParams
from engine.mapping import expr as ex
from engine.mapping.compile import Mapping
from engine.mapping.spec import Crossfade, MappingSpec

log = logging.getLogger("lj.scenes")


def _ease(x: float) -> float:
    x = 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)
    return x * x * (3.0 - 2.0 * x)


def mix_w(a: np.ndarray, b: np.ndarray, x: float, w_avg: np.ndarray, interp: str = "slerp"
          ) -> np.ndarray:
    """``[L, D]`` rows from ``a`` (x=0) to ``b`` (x=1): per row slerp of the offsets from
    ``w_avg`` (linear where two rows point the same way), or lerp. float32, a new array.

    A handful of numpy calls whatever ``L``: one ``[L, 2, 2]`` Gram matrix gives every row's
    angle, the per-row coefficients are plain floats, one einsum applies them."""
    if interp == "linear":
        out = b - a
        out *= np.float32(x)
        out += a
        return out
    w_avg = np.asarray(w_avg, dtype=np.float32)
    o = np.empty((2,) + a.shape, dtype=np.float32)
    np.subtract(a, w_avg, out=o[0])
    np.subtract(b, w_avg, out=o[1])
    gram = np.einsum("ild,jld->lij", o, o).tolist()
    coef = np.empty((2, a.shape[0]), dtype=np.float32)
    for r, ((aa, ab), (_, bb)) in enumerate(gram):
        d = math.sqrt(aa * bb)
        c = ab / d if d > 1e-30 else 1.0
        omega = math.acos(-1.0 if c < -1.0 else (1.0 if c > 1.0 else c))
        s = math.sin(omega)
        if omega < 1e-4 or s < 1e-6:
            coef[0, r], coef[1, r] = 1.0 - x, x
        else:
            coef[0, r] = math.sin((1.0 - x) * omega) / s
            coef[1, r] = math.sin(x * omega) / s
    out = np.einsum("il,ild->ld", coef, o)
    out += w_avg
    return out


def _mix_dict(a: dict, b: dict, x: float) -> dict:
    out = dict(a)
    for k, vb in b.items():
        va = a.get(k)
        out[k] = vb if va is None else va + (vb - va) * x
    return out


def mix_frames(a: FrameParams, b: FrameParams, x: float, w_avg: np.ndarray,
               interp: str = "slerp") -> FrameParams:
    """The frame ``x`` (0..1) of the way from ``a`` to ``b``. A uniform or generator parameter
    only one side sets keeps that side's value."""
    na, nb = a.noise, b.noise
    if isinstance(na, np.ndarray) or isinstance(nb, np.ndarray):
        noise = (np.asarray(na, np.float32) * np.float32(1.0 - x)
                 + np.asarray(nb, np.float32) * np.float32(x)).astype(np.float32)
        noise = np.broadcast_to(noise, (a.w_plus.shape[0],)).copy()
    else:
        noise = float(na + (nb - na) * x)
    return FrameParams(t=b.t, w_plus=mix_w(a.w_plus, b.w_plus, x, w_avg, interp),
                       truncation=float(a.truncation + (b.truncation - a.truncation) * x),
                       noise=noise, uniforms=_mix_dict(a.uniforms, b.uniforms, x),
                       generator=_mix_dict(getattr(a, "generator", {}),
                                           getattr(b, "generator", {}), x))


class Fade:
    """A crossfade in progress from ``old`` (still stepping) to ``new``."""

    def __init__(self, old, new, cf: Crossfade, w_avg: np.ndarray):
        self.old, self.new, self.cf = old, new, cf
        self.w_avg = w_avg
        self.t0 = new.time
        self.beat0 = getattr(new, "_beat", 0.0)
        self.x = 0.0

    def progress(self, t: float) -> float:
        if self.cf.length <= 0.0:
            return 1.0
        if self.cf.unit == "beats":
            return (getattr(self.new, "_beat", 0.0) - self.beat0) / self.cf.length
        return (t - self.t0) / self.cf.length

    def step(self, features: dict, controls: dict) -> bool:
        """Step the outgoing mapping one hop; True once the fade is over."""
        self.old.step_hop(features, controls)
        self.x = self.progress(self.new.time)
        return self.x >= 1.0

    def frame(self, t: float) -> FrameParams:
        x = _ease(self.progress(t))
        b = self.new.frame(t)
        if x >= 1.0:
            return b
        return mix_frames(self.old.frame(t), b, x, self.w_avg, self.cf.interp)


class SceneSet:
    """The compiled scenes of one file; see the module docstring."""

    def __init__(self, spec: MappingSpec, space, sr: int, hop: int):
        opts = spec.scene_options
        self.spec = spec
        self.path = spec.path
        self.generator = spec.generator
        self.shader_chain = list(spec.shader_chain)
        self.bindings = dict(spec.bindings)
        self.scenes = [Mapping(s, space, sr, hop) for s in spec.scenes]
        self.names = [e.name for e in opts.scenes]
        self._entries = opts.scenes
        self._switch = [ex.compile_expr(e.switch_on) if e.switch_on is not None else None
                        for e in opts.scenes]
        self._switch_prev = 1.0      # a trigger must fall below 0.5 before it can fire
        self._w_avg = np.asarray(space.w_avg, dtype=np.float64).reshape(-1)
        self.index = opts.start
        self.active = self.scenes[self.index]
        self.dt = self.active.dt
        self.num_layers = self.active.num_layers
        self.w_dim = self.active.w_dim
        self.params: dict[str, float] = {}
        self.param_ranges: dict[str, tuple[float, float]] = {}
        self.uniform_targets: dict[str, int] = {}
        self.generator_targets: dict = {}
        for m in self.scenes:
            for name, v in m.params.items():
                self.params.setdefault(name, v)
                self.param_ranges.setdefault(name, m.param_ranges[name])
            for k, v in m.uniform_targets.items():
                self.uniform_targets.setdefault(k, v)
            self.generator_targets.update(m.generator_targets)
        self._fade: Fade | None = None
        self._queued: int | None = None
        self.cues = CueTimer(opts.cues)
        if opts.cues.autostart:
            self.cues.start(0.0)
        self.switches = 0            # scene changes so far (for tests and the overlay)

    # -- what the session reads -----------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.spec.name}/{self.scene}"

    @property
    def scene(self) -> str:
        return self.names[self.index]

    @property
    def time(self) -> float:
        return self.active.time

    @property
    def position(self) -> float:
        return self.active.position

    @property
    def fading(self) -> bool:
        return self._fade is not None

    def values(self) -> dict[str, float]:
        return self.active.values()

    def __getattr__(self, name: str):
        if name in ("active", "scenes") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.active, name)

    # -- switching ------------------------------------------------------------------------------
    def resolve(self, target) -> int | None:
        """A scene index from a name, a 0-based index, ``"next"`` or ``"prev"``; None if none."""
        n = len(self.scenes)
        cur = self._queued if self._queued is not None else self.index
        if target == "next":
            return self._entries[cur].next
        if target == "prev":
            return (cur - 1) % n
        if isinstance(target, int) and not isinstance(target, bool):
            return target if 0 <= target < n else None
        if isinstance(target, str) and target in self.names:
            return self.names.index(target)
        return None

    def switch(self, target, crossfade: Crossfade | None = None) -> bool:
        """Go to scene ``target`` (see :meth:`resolve`) with its crossfade (or ``crossfade``).
        During a crossfade the change is queued. False (and a log line) if there is no such
        scene."""
        i = self.resolve(target)
        if i is None:
            log.warning("no scene %r (scenes: %s)", target, ", ".join(self.names))
            return False
        if self._fade is not None:
            self._queued = i
            return True
        if i == self.index:
            return True
        old, new = self.active, self.scenes[i]
        new.restore(old.state())
        cf = crossfade or self._entries[i].crossfade
        self.index, self.active = i, new
        self._switch_prev = 1.0
        self.switches += 1
        self._fade = Fade(old, new, cf, self._w_avg) if cf.length > 0.0 else None
        log.info("scene %s (crossfade %g %s)", self.names[i], cf.length, cf.unit)
        return True

    # -- per hop / per frame --------------------------------------------------------------------
    def step_hop(self, features: dict, controls: dict[str, float]) -> None:
        a = self.active
        a.step_hop(features, controls)
        if self._fade is not None and self._fade.step(features, controls):
            self._fade = None
            if self._queued is not None:
                q, self._queued = self._queued, None
                self.switch(q)
        ev = self._switch[self.index]
        if ev is not None:
            v = ev(a._env)
            rising = v > 0.5 >= self._switch_prev
            self._switch_prev = v if v - v == 0.0 else 0.0
            if rising and self._fade is None:
                self.switch(self._entries[self.index].next)
        if self.cues.running:
            for cue in self.cues.due(self.active.time):
                self.switch(cue.value)

    def frame(self, t: float) -> FrameParams:
        if self._fade is not None:
            return self._fade.frame(t)
        return self.active.frame(t)

    # -- reload ---------------------------------------------------------------------------------
    def state(self) -> dict:
        s = self.active.state()
        s["scene"] = self.scene
        return s

    def restore(self, state: dict) -> None:
        """Continue from a mapping's state; the scene of the same name if there is one."""
        name = state.get("scene") if state else None
        if name in self.names:
            self.index = self.names.index(name)
            self.active = self.scenes[self.index]
        self.active.restore(state)
        if self.cues.running:     # the cue list keeps its place on the audio clock
            self.cues._prev = self.active.time - self.cues._t0


class FadingMapping:
    """``new`` in place of ``old``, crossfading over ``seconds`` (a preset recall): both step
    until the fade is over, then :attr:`faded` is True and the owner swaps in :attr:`new`."""

    def __init__(self, old, new, seconds: float, w_avg: np.ndarray, interp: str = "slerp"):
        self.new = new
        self.faded = False
        self._fade = Fade(old, new, Crossfade(float(seconds), "seconds", interp),
                          np.asarray(w_avg, np.float64).reshape(-1))

    def step_hop(self, features: dict, controls: dict) -> None:
        self.new.step_hop(features, controls)
        if not self.faded and self._fade.step(features, controls):
            self.faded = True

    def frame(self, t: float) -> FrameParams:
        return self.new.frame(t) if self.faded else self._fade.frame(t)

    def __getattr__(self, name: str):
        if name in ("new", "_fade") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.new, name)


class LatentHold:
    """Hold a saved ``w_plus`` over the mapping's picture (``/lj/latent/recall``): fades in over
    ``seconds`` on the audio clock from the first frame it sees, and out again after
    :meth:`release`; truncation, noise and uniforms stay the mapping's."""

    def __init__(self, w_plus: np.ndarray, seconds: float, w_avg: np.ndarray):
        self.w = np.asarray(w_plus, dtype=np.float32)
        self.seconds = max(0.0, float(seconds))
        self.w_avg = np.asarray(w_avg, np.float64).reshape(-1)
        self._t0: float | None = None
        self._release_t: float | None = None
        self._release_from = 1.0
        self.released = False
        self._releasing = False
        self._x = 0.0

    def release(self) -> None:
        """Fade back to the mapping's picture (from wherever the fade in has got to)."""
        self._release_t = None
        self._release_from = self._x
        self._releasing = True

    def apply(self, p: FrameParams) -> FrameParams:
        if self._t0 is None:
            self._t0 = p.t
        fade = self.seconds
        if self._releasing:
            if self._release_t is None:
                self._release_t = p.t
            x = self._release_from * (1.0 - (
                (p.t - self._release_t) / fade if fade > 0 else 1.0))
            if x <= 0.0:
                self.released = True
                return p
        else:
            x = (p.t - self._t0) / fade if fade > 0 else 1.0
        x = 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)
        self._x = x
        w = mix_w(p.w_plus, self.w, _ease(x), self.w_avg)
        return FrameParams(t=p.t, w_plus=w, truncation=p.truncation, noise=p.noise,
                           uniforms=p.uniforms, generator=getattr(p, "generator", {}))
