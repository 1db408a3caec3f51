"""A :class:`MappingSpec` tied to a latent space: the per-hop / per-frame :class:`Mapping`.

``step_hop`` runs once per audio hop (~86 times a second at 44.1 kHz / 512): it reads the new
features and controls, evaluates every route and advances all time-dependent state (holds,
envelopes, smoothing, the walk position) by exactly one hop, ``dt = hop / sr`` seconds, so the
result does not depend on the frame rate. ``frame(t)`` is a pure read of that state.

Conditioning order of a route (each stage only if its key is present)::

    value = from-expression         (NaN/inf -> hold the last good value)
    threshold   value < threshold -> 0
    envelope    rising edge over 0.5 -> pulse: linear rise to 1 in attack_ms,
                exponential fall to 1 % in release_ms
    smooth      one-pole follower: 99 % of a rise in attack_ms, of a fall in release_ms
    power       sign(v) * |v| ** power
    range       lo + v * (hi - lo)
    gain        v * gain
    offset      v + offset
    clamp       min(max(v, lo), hi)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.errors import MappingError
from engine.frame import FrameParams, LatentSpace
from engine.mapping import expr as ex
from engine.mapping.latent import (Walk, blend_matrix, keyframes_from_seeds, latent_spread,
                                   layer_rows, push_direction)
from engine.mapping.spec import (CLOCK_SOURCES, SCALAR_FEATURES, TIME_SOURCES, VECTOR_FEATURES,
                                 MappingSpec, RouteSpec)

_LN100 = math.log(100.0)   # time constants are "time to cover 99 %"
_STATE_VERSION = 1


def _follow_coeff(ms: float, dt: float) -> float:
    """Per-hop one-pole coefficient that covers 99 % of a step in ``ms`` (1.0 = instant)."""
    return 1.0 if ms <= 0.0 else 1.0 - math.exp(-dt * _LN100 / (ms / 1000.0))


class _Conditioner:
    """The stateful part of one route, for ``width`` parallel values (1 for scalar routes)."""

    def __init__(self, r: RouteSpec, dt: float):
        w = r.width
        self.threshold = r.threshold
        self.has_env = r.envelope is not None
        if r.envelope is not None:
            a = r.envelope.attack_ms / 1000.0
            self.env_up = 2.0 if a <= 0.0 else dt / a       # level added per hop while rising
            rel = r.envelope.release_ms / 1000.0
            self.env_down = 0.0 if rel <= 0.0 else math.exp(-dt * _LN100 / rel)
        self.has_smooth = r.smooth is not None
        if r.smooth is not None:
            self.up = _follow_coeff(r.smooth.attack_ms, dt)
            self.down = _follow_coeff(r.smooth.release_ms, dt)
        self.power = r.power
        self.range = r.range
        self.gain = r.gain
        self.offset = r.offset
        self.clamp = r.clamp
        # state (plain lists: cheap per-element access from Python)
        self.held = [0.0] * w
        self.prev = [0.0] * w
        self.level = [0.0] * w
        self.rising = [False] * w
        self.smooth = [0.0] * w
        self.primed = False

    def process(self, i: int, x: float) -> float:
        if x - x != 0.0:            # NaN or +-inf: hold the last good value
            x = self.held[i]
        else:
            self.held[i] = x
        if self.threshold is not None and x < self.threshold:
            x = 0.0
        if self.has_env:
            if x > 0.5 >= self.prev[i]:
                self.rising[i] = True
            self.prev[i] = x
            lvl = self.level[i]
            if self.rising[i]:
                lvl += self.env_up
                if lvl >= 1.0:
                    lvl = 1.0
                    self.rising[i] = False
            else:
                lvl *= self.env_down
            self.level[i] = lvl
            x = lvl
        if self.has_smooth:
            if self.primed:
                y = self.smooth[i]
                y += (self.up if x > y else self.down) * (x - y)
                self.smooth[i] = y
                x = y
            else:
                self.smooth[i] = x
        p = self.power
        if p != 1.0:
            x = math.copysign(abs(x) ** p, x)
        if self.range is not None:
            lo, hi = self.range
            x = lo + x * (hi - lo)
        x = x * self.gain + self.offset
        if self.clamp is not None:
            lo, hi = self.clamp
            x = lo if x < lo else (hi if x > hi else x)
        return x

    def state(self) -> dict:
        return {"held": list(self.held), "prev": list(self.prev), "level": list(self.level),
                "rising": list(self.rising), "smooth": list(self.smooth), "primed": self.primed}

    def restore(self, s: dict) -> None:
        for key in ("held", "prev", "level", "rising", "smooth"):
            if len(s[key]) == len(self.held):
                setattr(self, key, list(s[key]))
        self.primed = bool(s["primed"])


class _Route:
    """A compiled route: its evaluator, conditioner and current output."""

    def __init__(self, spec: RouteSpec, dt: float):
        self.spec = spec
        self.kind = spec.kind
        self.cond = _Conditioner(spec, dt)
        self.eval = ex.compile_expr(spec.expr) if spec.expr is not None else None
        self.gain_eval = ex.compile_expr(spec.gain_expr) if spec.gain_expr is not None else None
        self.vector = spec.vector
        self.value = 0.0                                   # scalar output
        self.vec = np.zeros(spec.width, dtype=np.float64)  # vector output
        self.key = f"{spec.to}\x00{spec.source}"

    def update(self, env: dict) -> None:
        c = self.cond
        if self.gain_eval is not None:
            g = self.gain_eval(env)
            if g - g == 0.0:
                c.gain = g
        if self.vector is None:
            self.value = c.process(0, self.eval(env))
        else:
            src = env[self.vector]
            vec = self.vec
            for i in range(len(vec)):
                vec[i] = c.process(i, float(src[i]))
        c.primed = True


class _Push:
    def __init__(self, route: _Route, rows: range, direction: np.ndarray):
        self.route = route
        self.start, self.stop = rows.start, rows.stop
        self.direction = direction


class _Blend:
    def __init__(self, route: _Route, matrix: np.ndarray, w_dim: int):
        self.route = route
        self.matrix = matrix.astype(np.float64)    # [n_keys, width]
        self.amount_eval = ex.compile_expr(route.spec.amount)
        self.amount = 0.0
        self.active = False
        self.weights = np.zeros(matrix.shape[0], dtype=np.float64)
        self.weights32 = np.zeros(matrix.shape[0], dtype=np.float32)
        self.target = np.zeros(w_dim, dtype=np.float32)


class Mapping:
    """A compiled mapping: call :meth:`step_hop` per audio hop and :meth:`frame` per frame.

    Not thread-safe: call both from one thread (the main loop).
    """

    def __init__(self, spec: MappingSpec, space: LatentSpace, sr: int, hop: int):
        if sr <= 0 or hop <= 0:
            raise ValueError("sr and hop must be positive")
        self.spec = spec
        self.path = spec.path
        self.name = spec.name
        self.generator = spec.generator
        self.shader_chain = list(spec.shader_chain)
        self.params = {n: p.default for n, p in spec.params.items()}
        self.param_ranges = {n: (p.min, p.max) for n, p in spec.params.items()}
        self.dt = hop / sr
        self.num_layers = int(space.num_layers)
        self.w_dim = int(space.w_dim)

        lat = spec.latent
        self.keyframes = keyframes_from_seeds(space, lat.seeds)
        self._walk = Walk(self.keyframes, lat.walk.interp, space.w_avg)
        n = len(self.keyframes)
        self._n = n
        beat_s = 60.0 / spec.bpm if spec.bpm else 0.0
        unit_s = {"seconds": 1.0, "beats": beat_s, "bars": beat_s * spec.beats_per_bar}
        self._kps = 1.0 / (lat.walk.per_key * unit_s[lat.walk.unit])   # keys per second
        self._pos0 = 0.0
        if lat.walk.unit != "seconds":   # keyframes land on beats counted from clock.offset
            self._pos0 = (-spec.beat_offset * self._kps) % n

        # sources
        self._env: dict[str, Any] = {name: 0.0 for name in SCALAR_FEATURES + TIME_SOURCES}
        for name, length in VECTOR_FEATURES.items():
            self._env[name] = np.zeros(length, dtype=np.float64)
        if spec.bpm:
            for name in CLOCK_SOURCES:
                self._env[name] = 0.0
        self._param_keys = {name: f"param.{name}" for name in spec.params}
        for name, v in self.params.items():
            self._env[self._param_keys[name]] = float(v)
        used: set[str] = set()
        for r in spec.routes:
            for node in (r.expr, r.amount, r.gain_expr):
                if node is not None:
                    used.update(ref.name for ref in ex.references(node))
            if r.vector:
                used.add(r.vector)
        self._scalar_inputs = [f for f in SCALAR_FEATURES if f in used]
        self._vector_inputs = [(f, self._env[f]) for f in VECTOR_FEATURES if f in used]

        # routes
        self._routes = [_Route(r, self.dt) for r in spec.routes]
        self._by_kind: dict[str, list[_Route]] = {}
        for r in self._routes:
            self._by_kind.setdefault(r.kind, []).append(r)
        spread = latent_spread(space, self.keyframes) if "push" in self._by_kind else 1.0
        self._pushes: list[_Push] = []
        for r in self._by_kind.get("push", []):
            try:
                rows = layer_rows(space, r.spec.layers)
            except ValueError as e:
                raise MappingError(str(e), spec.path, r.spec.line_of("layers")) from None
            self._pushes.append(_Push(r, rows, push_direction(r.spec.direction_seed, self.w_dim,
                                                              spread)))
        self._blends = [_Blend(r, blend_matrix(n, r.spec.width), self.w_dim)
                        for r in self._by_kind.get("blend", [])]
        self._uniform_routes: dict[str, list[_Route]] = {}
        for r in self._by_kind.get("uniform", []):
            self._uniform_routes.setdefault(r.spec.uniform, []).append(r)
        self.uniform_targets: dict[str, int] = {}
        for r in self._by_kind.get("uniform", []):
            self.uniform_targets.setdefault(r.spec.uniform, r.spec.line_of("to"))

        # mutable state
        self._hops = 0
        self._t_hop = 0.0
        self._pos = self._pos0
        self._speed = 1.0
        self._truncation = lat.truncation
        self._noise = lat.noise
        self._uniforms: dict[str, float] = {name: 0.0 for name in self._uniform_routes}
        # scratch for frame() (never part of its result)
        self._w = np.zeros(self.w_dim, dtype=np.float32)
        self._tmp = np.zeros(self.w_dim, dtype=np.float32)

        self._update_routes()   # values before the first hop (all features 0)

    # -- per hop -------------------------------------------------------------------------------
    def step_hop(self, features: dict, controls: dict[str, float]) -> None:
        """Advance by one hop: read features/controls, evaluate routes, move the walk.

        ``features``: name -> float (or vector); a missing or non-finite value keeps the last one.
        ``controls``: param name (without ``param.``) -> value; clamped to the param's range;
        unknown names are ignored, absent params keep their last value.
        """
        env = self._env
        self._hops += 1
        t = self._hops * self.dt
        for name in self._scalar_inputs:
            v = features.get(name)
            if v is not None:
                try:
                    f = float(v)
                except (TypeError, ValueError):
                    continue
                if f - f == 0.0:
                    env[name] = f
        for name, buf in self._vector_inputs:
            v = features.get(name)
            if v is not None and np.shape(v) == buf.shape:
                buf[:] = v
        if controls:
            for name, value in controls.items():
                key = self._param_keys.get(name)
                if key is None:
                    continue
                try:
                    f = float(value)
                except (TypeError, ValueError):
                    continue
                if f - f == 0.0:
                    lo, hi = self.param_ranges[name]
                    env[key] = lo if f < lo else (hi if f > hi else f)
        env["time"] = t
        spec = self.spec
        if spec.bpm:
            beat = (t - spec.beat_offset) * spec.bpm / 60.0
            env["beat"] = beat
            env["beat_phase"] = beat % 1.0
            env["bar_phase"] = (beat / spec.beats_per_bar) % 1.0
        self._update_routes()
        self._pos = (self._pos + self.dt * self._speed * self._kps) % self._n
        self._t_hop = t

    def _update_routes(self) -> None:
        env = self._env
        for r in self._routes:
            r.update(env)
        self._aggregate()

    def _aggregate(self) -> None:
        """Combine route outputs into the per-target values that frame() reads."""
        env = self._env
        k = self._by_kind
        if "speed" in k:
            self._speed = sum(r.value for r in k["speed"])
        if "truncation" in k:
            self._truncation = sum(r.value for r in k["truncation"])
        if "noise" in k:
            self._noise = sum(r.value for r in k["noise"])
        for name, routes in self._uniform_routes.items():
            self._uniforms[name] = sum(r.value for r in routes)
        for b in self._blends:
            a = b.amount_eval(env)
            if a - a == 0.0:
                b.amount = 0.0 if a < 0.0 else (1.0 if a > 1.0 else a)
            np.dot(b.matrix, b.route.vec, out=b.weights)
            np.maximum(b.weights, 0.0, out=b.weights)
            total = float(b.weights.sum())
            b.active = total > 1e-9
            if b.active:
                b.weights /= total
                b.weights32[:] = b.weights
                np.dot(b.weights32, self.keyframes, out=b.target)

    # -- per frame -----------------------------------------------------------------------------
    def frame(self, t: float) -> FrameParams:
        """The parameters for a frame at ``t`` seconds. A pure read: it changes no state.

        The walk position is extrapolated from the last hop by ``t - t_hop`` (0..one hop), so
        the drift is smooth at any frame rate.
        """
        ahead = t - self._t_hop
        ahead = 0.0 if ahead < 0.0 else (self.dt if ahead > self.dt else ahead)
        p = self._pos + ahead * self._speed * self._kps
        w = self._walk.at(p, self._w)
        tmp = self._tmp
        for b in self._blends:
            if b.active and b.amount > 0.0:
                np.subtract(b.target, w, out=tmp)
                tmp *= np.float32(b.amount)
                w += tmp
        out = np.empty((self.num_layers, self.w_dim), dtype=np.float32)
        out[:] = w
        for push in self._pushes:
            v = push.route.value
            if v != 0.0:
                np.multiply(push.direction, np.float32(v), out=tmp)
                out[push.start:push.stop] += tmp
        return FrameParams(t=float(t), w_plus=out, truncation=float(self._truncation),
                           noise=float(self._noise), uniforms=dict(self._uniforms))

    # -- inspection ----------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Seconds of audio consumed so far (hops * dt)."""
        return self._t_hop

    @property
    def position(self) -> float:
        """Walk position in keys, 0 <= p < number of keyframes."""
        return self._pos

    def values(self) -> dict[str, float]:
        """Current scalar source values (features, params, clock): for overlays and tests."""
        return {k: v for k, v in self._env.items() if not isinstance(v, np.ndarray)}

    # -- reload --------------------------------------------------------------------------------
    def state(self) -> dict:
        """A plain-data snapshot to carry into the next mapping (see :meth:`restore`)."""
        routes: dict[str, dict] = {}
        seen: dict[str, int] = {}
        for r in self._routes:
            i = seen.get(r.key, 0)
            seen[r.key] = i + 1
            routes[f"{r.key}\x00{i}"] = dict(r.cond.state(), value=r.value, vec=r.vec.tolist())
        return {
            "version": _STATE_VERSION,
            "position": self._pos,
            "time": self._t_hop,
            "hops": self._hops,
            "dt": self.dt,
            "sources": self.values(),
            "routes": routes,
        }

    def restore(self, state: dict) -> None:
        """Continue from another mapping's :meth:`state`: walk position (modulo this mapping's
        keyframe count), audio time, held source values, parameter values still declared, and
        the conditioning state of routes with the same ``from`` and ``to``."""
        if not state or state.get("version") != _STATE_VERSION:
            return
        self._pos = float(state["position"]) % self._n
        if abs(float(state["dt"]) - self.dt) < 1e-12:
            self._hops = int(state["hops"])
        else:
            self._hops = int(round(float(state["time"]) / self.dt))
        self._t_hop = self._hops * self.dt
        for name, value in state.get("sources", {}).items():
            if name in self._env and not isinstance(self._env[name], np.ndarray):
                if name.startswith("param."):
                    lo, hi = self.param_ranges[name[6:]]
                    value = min(max(value, lo), hi)
                self._env[name] = value
        seen: dict[str, int] = {}
        routes = state.get("routes", {})
        for r in self._routes:
            i = seen.get(r.key, 0)
            seen[r.key] = i + 1
            s = routes.get(f"{r.key}\x00{i}")
            if s is not None and len(s["vec"]) == len(r.vec):
                r.cond.restore(s)
                r.value = float(s["value"])
                r.vec[:] = s["vec"]
            else:   # a new route: its value from the carried sources, as at start-up
                r.cond.primed = False
                r.update(self._env)
        self._aggregate()


def compile_mapping(spec: MappingSpec, space: LatentSpace, sr: int, hop: int) -> Mapping:
    """Tie ``spec`` to ``space`` (keyframes via ``space.seed_to_w``, push directions, layer
    rows) for audio at ``sr`` Hz analysed in hops of ``hop`` samples."""
    return Mapping(spec, space, sr, hop)
