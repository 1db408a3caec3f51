"""Latent-space building blocks for mappings: keyframes, walks, pushes, blends. Pure numpy.

All vectors are float32 in the generator's w space (``[w_dim]``; ``w_plus`` is
``[num_layers, w_dim]``). Positions along a walk are measured in *keys*: position ``p`` lies
between keyframe ``floor(p)`` and the next one, cyclically (after the last keyframe comes the
first again, so a loop joins without a jump).
"""

from __future__ import annotations

import math
import weakref
from typing import Sequence

import numpy as np

from engine.frame import LatentSpace

#: Seeds used (with the keyframes) to measure how far w typically lies from ``w_avg``.
_SPREAD_SEEDS = range(1_000_000, 1_000_016)


#: seed -> w per latent space (``seed_to_w`` is deterministic): a reload, or a scene file whose
#: scenes share seeds, does not run the generator's mapping network again. Bounded per space.
_SEED_CACHE: dict[int, tuple] = {}     # id(space) -> (weak reference to space, {seed: w})
_SEED_CACHE_MAX = 4096


def _seed_cache(space) -> dict | None:
    key = id(space)
    entry = _SEED_CACHE.get(key)
    if entry is not None and entry[0]() is space:
        return entry[1]
    try:
        ref = weakref.ref(space, lambda _r, key=key: _SEED_CACHE.pop(key, None))
    except TypeError:          # a space that cannot be weakly referenced: no cache
        return None
    cache: dict = {}
    _SEED_CACHE[key] = (ref, cache)
    return cache


def seed_w(space: LatentSpace, seed: int) -> np.ndarray:
    """``space.seed_to_w(seed)`` as float32 ``[w_dim]``, cached per space (read-only array)."""
    cache = _seed_cache(space)
    w = cache.get(seed) if cache is not None else None
    if w is None:
        w = np.asarray(space.seed_to_w(int(seed)), dtype=np.float32).reshape(space.w_dim).copy()
        w.flags.writeable = False
        if cache is not None:
            if len(cache) >= _SEED_CACHE_MAX:
                cache.clear()
            cache[seed] = w
    return w


def keyframes_from_seeds(space: LatentSpace, seeds: Sequence[int]) -> np.ndarray:
    """Stack ``space.seed_to_w(seed)`` for each seed: float32 ``[len(seeds), w_dim]``."""
    keys = np.empty((len(seeds), space.w_dim), dtype=np.float32)
    for i, seed in enumerate(seeds):
        keys[i] = seed_w(space, int(seed))
    return keys


def load_keyframe(path: str, w_dim: int, num_layers: int) -> np.ndarray:
    """A saved latent: a ``.npy`` file holding a float array ``[w_dim]`` or
    ``[num_layers, w_dim]`` (read with ``allow_pickle=False``: nothing in it is executed).

    Returns float32 of the file's shape. Raises ``ValueError`` (a one-line reason) if the file
    is missing, unreadable, not numeric, not finite or of another shape.
    """
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ValueError(f"keyframe file {path} not found") from None
    except (OSError, ValueError, EOFError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"keyframe file {path} is not a readable .npy array ({reason})") from None
    if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu":
        raise ValueError(f"keyframe file {path} must hold numbers, not {a.dtype}")
    if a.shape not in ((w_dim,), (num_layers, w_dim)):
        raise ValueError(f"keyframe file {path} has shape {list(a.shape)}; this generator needs "
                         f"[{w_dim}] or [{num_layers}, {w_dim}]")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"keyframe file {path} holds NaN or infinite values")
    return a


def keyframes_from_list(space: LatentSpace, keys: Sequence) -> np.ndarray:
    """Keyframes from seeds (ints) and ``.npy`` paths (strs), in order.

    float32 ``[n, w_dim]``, or ``[n, num_layers * w_dim]`` (each row a flattened w_plus) as
    soon as one file holds a per-layer latent; ``[w_dim]`` keyframes are then repeated on every
    layer. Raises ``ValueError`` for a bad file.
    """
    wd, nl = int(space.w_dim), int(space.num_layers)
    rows = [seed_w(space, int(k)) if not isinstance(k, str) else load_keyframe(k, wd, nl)
            for k in keys]
    if all(r.ndim == 1 for r in rows):
        return np.stack(rows).astype(np.float32)
    out = np.empty((len(rows), nl, wd), dtype=np.float32)
    for i, r in enumerate(rows):
        out[i] = r
    return out.reshape(len(rows), nl * wd)


def lfo_value(shape: str, cycles: float, seed: int = 0) -> float:
    """A low-frequency oscillator at ``cycles`` (cycle count; its fraction is the phase), 0..1.

    ``sine``: 0.5 + 0.5 sin(2 pi f) (starts at 0.5, rising); ``triangle``: 0 -> 1 -> 0;
    ``saw``: rises 0 -> 1 then drops; ``square``: 1 for the first half, 0 for the second;
    ``random``: a new value every cycle, held (deterministic in ``seed`` and the cycle number).
    """
    f = cycles - math.floor(cycles)
    if shape == "sine":
        return 0.5 + 0.5 * math.sin(2.0 * math.pi * f)
    if shape == "triangle":
        return 1.0 - abs(1.0 - 2.0 * f)
    if shape == "saw":
        return f
    if shape == "square":
        return 1.0 if f < 0.5 else 0.0
    if shape == "random":
        return _hash01(int(seed), int(math.floor(cycles)))
    raise ValueError(f"unknown lfo shape {shape!r}")


def _hash01(seed: int, n: int) -> float:
    """A well-mixed 64-bit hash (splitmix64) of ``(seed, n)`` as a float in [0, 1)."""
    m = (1 << 64) - 1
    z = (seed * 0x9E3779B97F4A7C15 + n * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


class Motion:
    """A bounded random drift in w (Lucid Sonic Dreams' "motion"), advanced once per hop.

    Every dimension moves in its own direction (+1 or -1, from ``seed``) by
    ``rate * (1 + jitter * u)`` per hop with ``u`` uniform in -1..1 drawn fresh each hop; a
    dimension that reaches ``+-bound`` turns back. ``offset`` (float64 ``[w_dim]``) is what gets
    added to w. No allocation per step.
    """

    def __init__(self, w_dim: int, jitter: float, bound: float, seed: int):
        rng = np.random.default_rng(int(seed))
        self.direction = np.where(rng.random(w_dim) < 0.5, -1.0, 1.0)
        self.offset = np.zeros(w_dim, dtype=np.float64)
        self.jitter = float(jitter)
        self.bound = float(bound)
        self._rng = np.random.default_rng(int(seed) + 1)
        self._step = np.empty(w_dim, dtype=np.float64)
        self._over = np.empty(w_dim, dtype=bool)

    def step(self, rate: float) -> None:
        """Move by ``rate`` (w units per hop, >= 0 for forward) with jitter, then bounce."""
        st = self._step
        self._rng.random(out=st)
        st *= 2.0 * self.jitter
        st += 1.0 - self.jitter
        st *= self.direction
        st *= rate
        self.offset += st
        b = self.bound
        np.greater(self.offset, b, out=self._over)
        self.direction[self._over] = -1.0
        np.less(self.offset, -b, out=self._over)
        self.direction[self._over] = 1.0
        np.clip(self.offset, -b, b, out=self.offset)


def latent_spread(space: LatentSpace, keys: np.ndarray) -> float:
    """RMS per-dimension distance of w from ``w_avg`` (> 0), over the keyframes and a few
    fixed extra seeds: the "typical spread" that scales push directions."""
    w_avg = np.asarray(space.w_avg, dtype=np.float64)
    keys = np.asarray(keys).reshape(-1, space.w_dim)
    extra = [np.asarray(seed_w(space, s), dtype=np.float64)
             for s in _SPREAD_SEEDS[: max(0, 16 - len(keys))]]
    samples = np.concatenate([np.asarray(keys, dtype=np.float64)] + [e[None] for e in extra])
    spread = float(np.sqrt(np.mean((samples - w_avg) ** 2)))
    return spread if math.isfinite(spread) and spread > 1e-8 else 1.0


def push_direction(seed: int, w_dim: int, spread: float) -> np.ndarray:
    """A fixed random direction for ``seed``: unit-variance normal values times ``spread``.

    Its length is about the length of a typical ``w - w_avg``, so a push of 1.0 moves the
    picture as far as going to a different random image (clearly visible). float32 ``[w_dim]``.
    """
    rng = np.random.default_rng(int(seed))
    return (rng.standard_normal(w_dim) * spread).astype(np.float32)


def layer_rows(space: LatentSpace, layers: str | tuple[int, int]) -> range:
    """Rows of ``w_plus`` named by ``layers``: a group name from ``space.layer_groups()``,
    ``"all"``, or an inclusive ``(first, last)`` pair. Raises ``ValueError`` if out of range."""
    if isinstance(layers, str):
        if layers == "all":
            return range(space.num_layers)
        groups = space.layer_groups()
        if layers not in groups:
            raise ValueError(f"unknown layer group {layers!r} (have: {', '.join(groups)}, all)")
        rows = groups[layers]
        return range(rows.start, rows.stop)
    first, last = layers
    if not (0 <= first <= last < space.num_layers):
        raise ValueError(f"layers [{first}, {last}] out of range: this generator has "
                         f"{space.num_layers} layers (0..{space.num_layers - 1})")
    return range(first, last + 1)


def blend_matrix(n_keys: int, n_bins: int) -> np.ndarray:
    """float32 ``[n_keys, n_bins]`` that sends weight bin ``i`` to keyframe ``i % n_keys``.

    With at least ``n_bins`` keyframes the first ``n_bins`` keyframes get one bin each; with
    fewer, bins cycle over the keyframes (bin 12 of chroma onto 5 keys: C->0, C#->1, ... F->0).
    """
    m = np.zeros((n_keys, n_bins), dtype=np.float32)
    for i in range(n_bins):
        m[i % n_keys, i] = 1.0
    return m


class Walk:
    """Cyclic interpolation through keyframes (``interp`` = ``"linear"``, ``"slerp"`` or
    ``"spline"``).

    Slerp works on the offsets ``w - w_avg`` (the spherical path keeps the picture's "energy"
    instead of cutting through the blander middle of the space); it falls back to linear where
    two keyframes point the same way. ``spline`` is a closed uniform Catmull-Rom curve: it passes
    through every keyframe with a continuous velocity, also where the loop joins. Per-segment
    constants are computed once here. ``w_avg`` is tiled when keys are flattened w_plus rows.
    """

    def __init__(self, keys: np.ndarray, interp: str, w_avg: np.ndarray):
        if interp not in ("linear", "slerp", "spline"):
            raise ValueError(f"unknown interpolation {interp!r}")
        self.keys = np.ascontiguousarray(keys, dtype=np.float32)
        self.n = len(self.keys)
        self.interp = interp
        w_avg = np.asarray(w_avg, dtype=np.float32).reshape(-1)
        if self.keys.shape[1] != w_avg.shape[0]:
            w_avg = np.tile(w_avg, self.keys.shape[1] // w_avg.shape[0])
        self.w_avg = w_avg
        self._off = (self.keys - self.w_avg).astype(np.float64)
        nxt = np.roll(self._off, -1, axis=0)
        na = np.linalg.norm(self._off, axis=1)
        nb = np.linalg.norm(nxt, axis=1)
        cos = np.sum(self._off * nxt, axis=1) / np.maximum(na * nb, 1e-30)
        self._omega = np.arccos(np.clip(cos, -1.0, 1.0))
        self._tmp = np.empty_like(self.w_avg)

    def at(self, p: float, out: np.ndarray) -> np.ndarray:
        """Write the walk's w at position ``p`` (keys, any real number) into ``out`` [w_dim]."""
        p = float(p) % self.n
        k = int(p)
        if k >= self.n:  # p a hair below n rounded up
            k = self.n - 1
        t = p - k
        a, b = self.keys[k], self.keys[(k + 1) % self.n]
        if self.interp == "spline":
            n = self.n
            t2, t3 = t * t, t * t * t
            coeffs = ((-0.5 * t3 + t2 - 0.5 * t, (k - 1) % n),
                      (1.5 * t3 - 2.5 * t2 + 1.0, k),
                      (-1.5 * t3 + 2.0 * t2 + 0.5 * t, (k + 1) % n),
                      (0.5 * t3 - 0.5 * t2, (k + 2) % n))
            out[:] = 0.0
            for c, j in coeffs:
                np.multiply(self.keys[j], np.float32(c), out=self._tmp)
                out += self._tmp
            return out
        omega = self._omega[k]
        if self.interp == "slerp" and omega > 1e-4 and math.sin(omega) > 1e-6:
            s = math.sin(omega)
            ca = math.sin((1.0 - t) * omega) / s
            cb = math.sin(t * omega) / s
            # out = w_avg + ca * (a - w_avg) + cb * (b - w_avg)
            np.multiply(a, ca, out=out)
            np.multiply(b, cb, out=self._tmp)
            out += self._tmp
            np.multiply(self.w_avg, 1.0 - ca - cb, out=self._tmp)
            out += self._tmp
        else:
            np.subtract(b, a, out=out)
            out *= np.float32(t)
            out += a
        return out


def slerp(a: np.ndarray, b: np.ndarray, t: float, center: np.ndarray | None = None) -> np.ndarray:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1) around ``center`` (default 0).

    float32 result; falls back to linear interpolation where ``a`` and ``b`` point the same way.
    """
    c = np.zeros(np.shape(a), dtype=np.float64) if center is None else np.asarray(center, np.float64)
    oa = np.asarray(a, np.float64) - c
    ob = np.asarray(b, np.float64) - c
    cos = float(oa @ ob) / max(float(np.linalg.norm(oa) * np.linalg.norm(ob)), 1e-30)
    omega = math.acos(min(1.0, max(-1.0, cos)))
    if omega < 1e-4 or math.sin(omega) < 1e-6:
        out = oa + (ob - oa) * t
    else:
        s = math.sin(omega)
        out = oa * (math.sin((1.0 - t) * omega) / s) + ob * (math.sin(t * omega) / s)
    return (out + c).astype(np.float32)
