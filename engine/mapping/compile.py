"""A :class:`MappingSpec` tied to a latent space: the per-hop / per-frame :class:`Mapping`.

``step_hop`` runs once per audio hop (~86 times a second at 44.1 kHz / 512): it reads the new
features and controls, evaluates every route and advances all time-dependent state (holds,
envelopes, smoothing, the walk position) by exactly one hop, ``dt = hop / sr`` seconds, so the
result does not depend on the frame rate. ``frame(t)`` is a pure read of that state.

Conditioning order of a route (each stage only if its key is present)::

    value = from-expression         (NaN/inf -> hold the last good value)
    gate        gate expression <= 0.5 -> 0
    threshold   value < threshold -> 0
    normalize   (v - running min) / (running max - running min), 0..1
    hold        latch v on a rising edge of the hold expression through 0.5
    quantize    latch v when a new block of `quantize` beats starts
    envelope    rising edge over 0.5 -> pulse: linear rise to 1 in attack_ms,
                exponential fall to 1 % in release_ms
    smooth      one-pole follower: 99 % of a rise in attack_ms, of a fall in release_ms
    power       sign(v) * |v| ** power
    curve       exp: (e^(k v) - 1) / (e^k - 1); smoothstep: 3v^2 - 2v^3 (v clamped to 0..1)
    range       lo + v * (hi - lo)
    gain        v * gain
    offset      v + offset
    integrate   position += v * dt, kept in [min, max] by clamp, bounce or wrap
    clamp       min(max(v, lo), hi)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.errors import MappingError
from engine.frame import FrameParams, LatentSpace
from engine.mapping import expr as ex
from engine.mapping.latent import (Motion, Walk, blend_matrix, keyframes_from_list, load_keyframe,
                                   latent_spread, layer_rows, lfo_value, push_direction)
from engine.mapping.spec import (CLOCK_SOURCES, DEFAULT_MODES, SCALAR_FEATURES, TIME_SOURCES,
                                 VECTOR_FEATURES, MappingSpec, MotionSpec, RouteSpec, suggest)

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
        self.dt = dt
        self.has_gate = r.gate is not None
        self.has_hold = r.hold is not None
        self.has_quant = r.quantize_beats is not None
        self.has_norm = r.normalize_s is not None
        self.norm_c = _follow_coeff(r.normalize_s * 1000.0, dt) if self.has_norm else 0.0
        self.curve = r.curve
        k = r.curve_k
        self.curve_k = k
        self.curve_div = math.expm1(k) if r.curve == "exp" else 1.0
        self.integ = r.integrate
        # per-hop inputs set by the route before process(): gate open, hold/quantize edges
        self.gate_open = True
        self.latch_now = False
        # state (plain lists: cheap per-element access from Python)
        self.held = [0.0] * w
        self.prev = [0.0] * w
        self.level = [0.0] * w
        self.rising = [False] * w
        self.smooth = [0.0] * w
        self.latched = [0.0] * w
        self.lo = [0.0] * w
        self.hi = [0.0] * w
        lo0 = 0.0 if r.integrate is None else min(max(0.0, r.integrate[0]), r.integrate[1])
        self.pos = [lo0] * w
        self.dir = [1.0] * w
        self.primed = False

    def process(self, i: int, x: float) -> float:
        if x - x != 0.0:            # NaN or +-inf: hold the last good value
            x = self.held[i]
        else:
            self.held[i] = x
        if self.has_gate and not self.gate_open:
            x = 0.0
        if self.threshold is not None and x < self.threshold:
            x = 0.0
        if self.has_norm:
            if self.primed:
                c = self.norm_c
                lo = self.lo[i]
                hi = self.hi[i]
                lo = x if x < lo else lo + (x - lo) * c
                hi = x if x > hi else hi + (x - hi) * c
            else:
                lo = hi = x
            self.lo[i] = lo
            self.hi[i] = hi
            span = hi - lo
            x = (x - lo) / span if span > 1e-9 else 0.0
        if self.has_hold or self.has_quant:
            if self.latch_now or not self.primed:
                self.latched[i] = x
            x = self.latched[i]
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
        if self.curve != "linear":
            if self.curve == "smoothstep":
                x = 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)
                x = x * x * (3.0 - 2.0 * x)
            else:   # exp; the argument is limited so a wild value cannot overflow
                e = self.curve_k * x
                x = math.expm1(e if e < 700.0 else 700.0) / self.curve_div
        if self.range is not None:
            lo, hi = self.range
            x = lo + x * (hi - lo)
        x = x * self.gain + self.offset
        if self.integ is not None:
            lo, hi, mode = self.integ
            q = self.pos[i] + self.dir[i] * x * self.dt
            if q > hi or q < lo:
                if mode == "wrap":
                    q = lo + (q - lo) % (hi - lo)
                elif mode == "bounce":
                    span = hi - lo
                    m = (q - lo) % (2.0 * span)        # reflect into [lo, hi]
                    q = lo + (m if m <= span else 2.0 * span - m)
                    self.dir[i] = -self.dir[i]
                else:
                    q = lo if q < lo else hi
            if q - q != 0.0:   # an infinite velocity: stay where we were
                q = self.pos[i]
            self.pos[i] = q
            x = q
        if self.clamp is not None:
            lo, hi = self.clamp
            x = lo if x < lo else (hi if x > hi else x)
        return x

    _STATE_KEYS = ("held", "prev", "level", "rising", "smooth", "latched", "lo", "hi", "pos",
                   "dir")

    def state(self) -> dict:
        out: dict[str, Any] = {k: list(getattr(self, k)) for k in self._STATE_KEYS}
        out["primed"] = self.primed
        return out

    def restore(self, s: dict) -> None:
        for key in self._STATE_KEYS:
            v = s.get(key)
            if v is not None and len(v) == len(self.held):
                setattr(self, key, list(v))
        self.primed = bool(s["primed"])


class _Route:
    """A compiled route: its evaluator, conditioner and current output."""

    def __init__(self, spec: RouteSpec, dt: float):
        self.spec = spec
        self.kind = spec.kind
        self.cond = _Conditioner(spec, dt)
        self.eval = ex.compile_expr(spec.expr) if spec.expr is not None else None
        self.gain_eval = ex.compile_expr(spec.gain_expr) if spec.gain_expr is not None else None
        self.gate_eval = ex.compile_expr(spec.gate) if spec.gate is not None else None
        self.hold_eval = ex.compile_expr(spec.hold) if spec.hold is not None else None
        self.hold_prev = 0.0
        self.quant = spec.quantize_beats
        self.block = None          # index of the current quantize block (beats // quantize)
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
        if self.gate_eval is not None:
            c.gate_open = self.gate_eval(env) > 0.5
        latch = False
        if self.hold_eval is not None:
            h = self.hold_eval(env)
            latch = h > 0.5 >= self.hold_prev
            self.hold_prev = h if h - h == 0.0 else 0.0
        if self.quant is not None:
            block = math.floor(env["beats"] / self.quant)
            latch = latch or block != self.block
            self.block = block
        c.latch_now = latch
        if self.vector is None:
            self.value = c.process(0, self.eval(env))
        else:
            src = env[self.vector]
            vec = self.vec
            for i in range(len(vec)):
                vec[i] = c.process(i, float(src[i]))
        c.primed = True


class _Contribution:
    """One latent contribution to the rows ``start:stop`` of ``w_plus``.

    It proposes the point ``P = w_avg + d`` with a weight ``a`` and combines with the rows by
    ``mode``: ``add`` ``rows += a * d``; ``average`` ``rows += clamp(a, 0, 1) * (P - rows)``;
    ``overwrite`` ``rows = w_avg + a * d``. ``d`` is ``[w_dim]`` or ``[rows, w_dim]``.
    """

    def __init__(self, route, rows: range, mode: str, d: np.ndarray, w_avg: np.ndarray):
        self.route = route
        self.start, self.stop = rows.start, rows.stop
        self.mode = mode
        self.d = d
        self.w_avg = w_avg
        self.tmp = np.empty((rows.stop - rows.start, w_avg.shape[0]), dtype=np.float32)

    def apply(self, out: np.ndarray, a: float, d: np.ndarray | None = None) -> None:
        d = self.d if d is None else d
        rows = out[self.start:self.stop]
        tmp = self.tmp
        mode = self.mode
        if mode == "add":
            if a != 0.0:
                np.multiply(d, np.float32(a), out=tmp)
                rows += tmp
        elif mode == "average":
            a = 0.0 if a < 0.0 else (1.0 if a > 1.0 else a)
            if a > 0.0:
                np.add(d, self.w_avg, out=tmp)
                tmp *= np.float32(a)
                rows *= np.float32(1.0 - a)
                rows += tmp
        else:   # overwrite
            np.multiply(d, np.float32(a), out=tmp)
            tmp += self.w_avg
            rows[:] = tmp


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
        self.contrib: _Contribution | None = None
        self.d: np.ndarray | None = None           # target - w_avg, as rows


class Mapping:
    """A compiled mapping: call :meth:`step_hop` per audio hop and :meth:`frame` per frame.

    Not thread-safe: call both from one thread (the main loop).
    """

    def __init__(self, spec: MappingSpec, space: LatentSpace, sr: int, hop: int,
                 keyframes: np.ndarray | None = None):
        if sr <= 0 or hop <= 0:
            raise ValueError("sr and hop must be positive")
        self.spec = spec
        self.path = spec.path
        self.name = spec.name
        self.generator = spec.generator
        self.shader_chain = list(spec.shader_chain)
        self.bindings = dict(spec.bindings)
        self.params = {n: p.default for n, p in spec.params.items()}
        self.param_ranges = {n: (p.min, p.max) for n, p in spec.params.items()}
        self.dt = hop / sr
        self._space = space
        self.num_layers = int(space.num_layers)
        self.w_dim = int(space.w_dim)

        lat = spec.latent
        if keyframes is not None:   # a preset's saved keyframes replace the file's
            kf = np.asarray(keyframes, dtype=np.float32)
            wd, nl = int(space.w_dim), int(space.num_layers)
            if kf.ndim != 2 or kf.shape[1] not in (wd, wd * nl) or not 0 < len(kf) <= 256:
                raise MappingError(f"saved keyframes have shape {list(kf.shape)}; this "
                                   f"generator needs [n, {wd}] or [n, {nl * wd}]", spec.path,
                                   lat.keys_line)
            pulls = [r.key for r in spec.routes if r.kind == "pull"]
            if pulls and max(pulls) >= len(kf):
                raise MappingError(f"saved keyframes: {len(kf)}, but a pull needs key "
                                   f"{max(pulls)}", spec.path, lat.keys_line)
            self.keyframes = kf
        else:
            try:
                self.keyframes = keyframes_from_list(space, lat.key_list())
            except ValueError as e:
                raise MappingError(str(e), spec.path, lat.keys_line) from None
        self._layered = self.keyframes.shape[1] != self.w_dim   # rows are flattened w_plus
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
        self._lfos = [(f"lfo.{l.name}", l.shape, l.unit, l.rate, l.phase, l.seed)
                      for l in spec.lfos.values()]
        for key, *_ in self._lfos:
            self._env[key] = 0.0
        self._beat = 0.0                 # beats since the clock offset (or the live tracker)
        self._live_phase: float | None = None
        self._param_keys = {name: f"param.{name}" for name in spec.params}
        for name, v in self.params.items():
            self._env[self._param_keys[name]] = float(v)
        used: set[str] = set()
        for r in spec.routes:
            for node in (r.expr, r.amount, r.gain_expr, r.gate, r.hold):
                if node is not None:
                    used.update(ref.name for ref in ex.references(node))
            if r.vector:
                used.add(r.vector)
        for node in spec.watch:   # scene switch triggers read sources no route may use
            used.update(ref.name for ref in ex.references(node))
        self._scalar_inputs = [f for f in SCALAR_FEATURES if f in used]
        self._vector_inputs = [(f, self._env[f]) for f in VECTOR_FEATURES if f in used]

        # routes
        self._routes = [_Route(r, self.dt) for r in spec.routes]
        self._by_kind: dict[str, list[_Route]] = {}
        for r in self._routes:
            self._by_kind.setdefault(r.kind, []).append(r)
        spread = latent_spread(space, self.keyframes) if "push" in self._by_kind else 1.0
        nl, wd = self.num_layers, self.w_dim
        w_avg = np.asarray(space.w_avg, dtype=np.float32).reshape(wd)
        self._w_avg = w_avg
        key_rows = np.empty((n, nl, wd), dtype=np.float32)
        key_rows[:] = (self.keyframes.reshape(n, nl, wd) if self._layered
                       else self.keyframes[:, None, :])
        self._key_rows = key_rows

        def contribution(r: _Route, d: np.ndarray) -> _Contribution:
            rows = self._rows(r.spec.layers, r.spec.line_of("layers"))
            if d.ndim == 2:
                d = d[rows.start:rows.stop]
            return _Contribution(r, rows, r.spec.mode or DEFAULT_MODES[r.kind], d, w_avg)

        def direction(r: _Route) -> np.ndarray:
            if r.spec.direction_file is None:
                return push_direction(r.spec.direction_seed, wd, spread)
            try:   # a saved direction, in w units: [w_dim] or per layer [num_layers, w_dim]
                return load_keyframe(r.spec.direction_file, wd, nl)
            except ValueError as e:
                raise MappingError(str(e).replace("keyframe file", "direction file"), spec.path,
                                   r.spec.line_of("direction")) from None

        self._pushes = [contribution(r, direction(r)) for r in self._by_kind.get("push", [])]
        self._blends = [_Blend(r, blend_matrix(n, r.spec.width), self.keyframes.shape[1])
                        for r in self._by_kind.get("blend", [])]
        for b in self._blends:
            rows = self._rows(b.route.spec.layers, b.route.spec.line_of("layers"))
            if self._layered:
                b.d = np.zeros((rows.stop - rows.start, wd), dtype=np.float32)
                b.rows_view = b.target.reshape(nl, wd)[rows.start:rows.stop]
            else:
                b.d = np.zeros(wd, dtype=np.float32)
                b.rows_view = b.target
            b.contrib = _Contribution(b.route, rows, b.route.spec.mode or "average", b.d, w_avg)
        self._pulls = [contribution(r, key_rows[r.spec.key] - w_avg)
                       for r in self._by_kind.get("pull", [])]
        wrows = self._rows(lat.walk.layers, lat.walk.line)
        self._walk_rows = None if wrows == range(nl) else (wrows.start, wrows.stop)
        ms = lat.motion
        if ms is None and "motion" in self._by_kind:
            ms = MotionSpec()
        self._motion = None
        if ms is not None:
            if spread == 1.0 and "push" not in self._by_kind:
                spread = latent_spread(space, self.keyframes)
            self._motion = Motion(self.w_dim, ms.jitter, ms.bound * spread, ms.seed)
            self._motion_rate = ms.speed * spread * self.dt      # w units per hop at motion 1
            self._motion32 = np.zeros(self.w_dim, dtype=np.float32)
            self._motion_c = _Contribution(None, self._rows(ms.layers, ms.line), ms.mode,
                                           self._motion32, w_avg)
        # noise: one float, or per layer when a noise route names layers or adds to the base
        self._noise_routes = []
        for r in self._by_kind.get("noise", []):
            rows = self._rows(r.spec.layers, r.spec.line_of("layers"))
            self._noise_routes.append((r, rows.start, rows.stop, r.spec.mode or "overwrite"))
        self._noise_layered = any(s != 0 or e != nl or m != "overwrite"
                                  for _, s, e, m in self._noise_routes)
        self._noise_rows = np.full(nl, lat.noise, dtype=np.float32)
        # generator-specific parameters, validated against the generator's own ranges
        ranges = getattr(space, "param_ranges", None) or {}
        self.generator_targets: dict[str, tuple[float, float, float]] = {}
        self._gen_routes: dict[str, list[_Route]] = {}
        for r in self._by_kind.get("generator", []):
            name = r.spec.uniform
            if name not in ranges:
                have = ", ".join(sorted(ranges)) or "none"
                raise MappingError(f"unknown generator parameter {name!r} (this generator has: "
                                   f"{have}){suggest(name, ranges)}", spec.path,
                                   r.spec.line_of("to"))
            default, lo, hi = (float(x) for x in ranges[name])
            self.generator_targets[name] = (default, lo, hi)
            self._gen_routes.setdefault(name, []).append(r)
        self._generator: dict[str, float] = {}
        self._uniform_routes: dict[str, list[_Route]] = {}
        for r in self._by_kind.get("uniform", []):
            self._uniform_routes.setdefault(r.spec.uniform, []).append(r)
        self.uniform_targets: dict[str, int] = {}
        for r in self._by_kind.get("uniform", []):
            self.uniform_targets.setdefault(r.spec.uniform, r.spec.line_of("to"))

        # mutable state
        self._motion_amount = 1.0
        self._hops = 0
        self._t_hop = 0.0
        self._pos = self._pos0
        self._speed = 1.0
        self._truncation = lat.truncation
        self._noise = lat.noise
        self._uniforms: dict[str, float] = {name: 0.0 for name in self._uniform_routes}
        # scratch for frame() (never part of its result)
        self._w = np.zeros(self.keyframes.shape[1], dtype=np.float32)
        self._tmp = np.zeros(self.keyframes.shape[1], dtype=np.float32)
        self._tmp_rows = np.zeros((self.num_layers, self.w_dim), dtype=np.float32)

        self._update_routes()   # values before the first hop (all features 0)

    def _rows(self, layers, line) -> range:
        try:
            return layer_rows(self._space, layers)
        except ValueError as e:
            raise MappingError(str(e), self.spec.path, line) from None

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
            beat = self._next_beat(features, t)
            env["beats"] = beat
            env["beat_phase"] = beat % 1.0
            env["bar_phase"] = (beat / spec.beats_per_bar) % 1.0
        if self._lfos:
            self._update_lfos(t)
        self._update_routes()
        self._pos = (self._pos + self.dt * self._speed * self._kps) % self._n
        if self._motion is not None:
            self._motion.step(self._motion_rate * self._motion_amount)
            self._motion32[:] = self._motion.offset
        self._t_hop = t

    def _next_beat(self, features: dict, t: float) -> float:
        """Beats since the clock's offset. A live ``beat_phase`` feature (0..1, from a tempo
        tracker) wins: the beat count goes up by one each time it wraps; else a live ``bpm``
        feature sets the rate; else the file's ``[clock] bpm``."""
        spec = self.spec
        ph = features.get("beat_phase")
        try:  # the tracker's phase means something only once it reports a tempo
            tracking = float(features.get("bpm", 1.0)) > 0.0
        except (TypeError, ValueError):
            tracking = False
        if ph is not None and tracking:
            try:
                ph = float(ph)
            except (TypeError, ValueError):
                ph = None
        if ph is not None and 0.0 <= ph <= 1.0:
            count = math.floor(self._beat)
            if self._live_phase is None:
                if ph < self._beat - count - 0.5:     # switching over just after a beat
                    count += 1
            elif ph < self._live_phase - 0.5:
                count += 1
            self._live_phase = ph
            self._beat = count + (ph if ph < 1.0 else 0.0)
            return self._beat
        self._live_phase = None
        bpm = features.get("bpm")
        if bpm is not None:
            try:
                bpm = float(bpm)
            except (TypeError, ValueError):
                bpm = None
        if bpm is not None and 1.0 <= bpm <= 1000.0:
            self._beat += self.dt * bpm / 60.0
        else:
            self._beat = (t - spec.beat_offset) * spec.bpm / 60.0
        return self._beat

    def _update_lfos(self, t: float) -> None:
        env = self._env
        beat = self._beat
        bpb = self.spec.beats_per_bar
        for key, shape, unit, rate, phase, seed in self._lfos:
            if unit == "hz":
                cyc = t * rate + phase
            elif unit == "beats":
                cyc = beat / rate + phase
            else:
                cyc = beat / (rate * bpb) + phase
            env[key] = lfo_value(shape, cyc, seed)

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
            if self._noise_layered:
                rows = self._noise_rows
                rows[:] = self.spec.latent.noise
                for _, s, e, mode in self._noise_routes:
                    if mode == "overwrite":
                        rows[s:e] = 0.0
                for r, s, e, _ in self._noise_routes:   # kept inside float32's range
                    v = r.value
                    rows[s:e] += -1e30 if v < -1e30 else (1e30 if v > 1e30 else v)
            else:
                self._noise = sum(r.value for r in k["noise"])
        for name, routes in self._gen_routes.items():
            _, lo, hi = self.generator_targets[name]
            v = sum(r.value for r in routes)
            self._generator[name] = lo if v < lo else (hi if v > hi else v)
        if "motion" in k:
            self._motion_amount = sum(r.value for r in k["motion"])
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
        out = np.empty((self.num_layers, self.w_dim), dtype=np.float32)
        if self._layered:
            out[:] = w.reshape(self.num_layers, self.w_dim)
        else:
            out[:] = w
        if self._walk_rows is not None:   # rows outside the walk's layers hold keyframe 0
            s, e = self._walk_rows
            keep = out[s:e].copy()
            out[:] = self._key_rows[0]
            out[s:e] = keep
        for b in self._blends:
            if b.active:
                np.subtract(b.rows_view, self._w_avg, out=b.d)
                b.contrib.apply(out, b.amount)
        for pull in self._pulls:
            pull.apply(out, pull.route.value)
        if self._motion is not None:
            self._motion_c.apply(out, 1.0)
        for push in self._pushes:
            push.apply(out, push.route.value)
        noise = self._noise_rows.copy() if self._noise_layered else float(self._noise)
        return FrameParams(t=float(t), w_plus=out, truncation=float(self._truncation),
                           noise=noise, uniforms=dict(self._uniforms),
                           generator=dict(self._generator))

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
            "beat": self._beat,
            "motion": None if self._motion is None else {
                "offset": self._motion.offset.tolist(),
                "direction": self._motion.direction.tolist()},
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
        self._beat = float(state.get("beat", self._beat))
        mo = state.get("motion")
        if self._motion is not None and mo and len(mo["offset"]) == self.w_dim:
            self._motion.offset[:] = mo["offset"]
            self._motion.direction[:] = mo["direction"]
            np.clip(self._motion.offset, -self._motion.bound, self._motion.bound,
                    out=self._motion.offset)
            self._motion32[:] = self._motion.offset
        for name, value in state.get("sources", {}).items():   # held sources and params
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


def compile_mapping(spec: MappingSpec, space: LatentSpace, sr: int, hop: int):
    """Tie ``spec`` to ``space`` (keyframes via ``space.seed_to_w``, push directions, layer
    rows) for audio at ``sr`` Hz analysed in hops of ``hop`` samples.

    A file with ``[[scene]]`` tables compiles to a :class:`~engine.mapping.scenes.SceneSet`
    (every scene compiled now, so a switch never compiles); any other to a :class:`Mapping`.
    Both have the same interface (``step_hop``, ``frame``, ``state``, ``restore``, ...)."""
    if spec.scenes:
        from engine.mapping.scenes import SceneSet

        return SceneSet(spec, space, sr, hop)
    return Mapping(spec, space, sr, hop)
