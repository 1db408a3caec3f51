"""Direct control: OSC values that override what the mapping decided for one target.

Every shader input of the chain (``/lj/fx/<effect>/<input>``), the truncation (``/lj/truncation``)
and the noise strength (``/lj/noise``) can be set from outside. Values arrive normalised, **0–1**,
and are mapped onto the target's real range (the ISF ``MIN``..``MAX`` of a shader input; 0..1 for
truncation ψ and noise), so a TouchOSC or TouchDesigner fader needs no scaling.

How a direct value combines with the mapping: it **overrides** the mapping's value for that target
while it is held (like a TouchDesigner parameter that a CHOP export drives: the last writer wins),
until it is released with ``/lj/release [address-or-pattern]``. Smoothing applies as for
parameters: grabbing a fader glides from the value on screen to the fader's, it never jumps. To
*modulate* a mapping's value instead (audio x fader), declare a ``[params]`` entry in the mapping
and use it in the route's expression; that is what ``/lj/param/<name>`` is for.

The values enter at the mapping stage: :meth:`DirectControl.apply` edits the
:class:`~engine.frame.FrameParams` the mapping produced, before the generator and the shader chain
see it. Nothing here touches GL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from engine.control.space import NAME_RE, RELEASE  # noqa: F401 (RELEASE: re-exported)

FX_PREFIX = "/lj/fx/"
TRUNCATION = "/lj/truncation"
NOISE = "/lj/noise"

#: The real range of the two latent targets that 0..1 maps onto (truncation psi, noise strength).
TRUNCATION_RANGE = (0.0, 1.0)
NOISE_RANGE = (0.0, 1.0)


def to_real(norm: float, lo: float, hi: float) -> float:
    """``norm`` (0..1, clamped) onto ``lo..hi``."""
    norm = 0.0 if norm < 0.0 else (1.0 if norm > 1.0 else norm)
    return lo + (hi - lo) * norm


def to_norm(value: float, lo: float, hi: float) -> float:
    """``value`` in ``lo..hi`` as 0..1 (clamped; 0 for an empty range)."""
    if not hi > lo:
        return 0.0
    x = (float(value) - lo) / (hi - lo)
    return 0.0 if x < 0.0 or x != x else (1.0 if x > 1.0 else x)


def fx_address(key: str) -> str:
    """``"kaleido.segments"`` -> ``"/lj/fx/kaleido/segments"``."""
    effect, _, name = key.partition(".")
    return f"{FX_PREFIX}{effect}/{name}"


def fx_targets(inputs: Mapping[str, tuple]) -> dict[str, tuple[str, float, float, float]]:
    """``{address: (uniform key, default, lo, hi)}`` for every scalar input a chain offers.

    ``inputs`` is ``Renderer.inputs`` (``{"<effect>.<input>": (default, min, max)}``). Vector
    inputs (color, point2D) and names that are not one address segment are left out; a ``bool``
    input without a range gets 0..1.
    """
    out = {}
    for key, (default, lo, hi) in inputs.items():
        effect, _, name = key.partition(".")
        if isinstance(default, (tuple, list)) or not (NAME_RE.fullmatch(effect) and NAME_RE.fullmatch(name)):
            continue
        default = float(default) if default is not None else 0.0
        lo = 0.0 if lo is None else float(lo)
        hi = 1.0 if hi is None else float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
            continue
        out[fx_address(key)] = (key, default, lo, hi)
    return out


class DirectControl:
    """Declares the direct targets to a :class:`~engine.control.state.Controls` and applies them.

    The live loop calls :meth:`declare` at start and whenever the shader chain changes, and per
    frame :meth:`apply` (overrides into the frame's parameters) and :meth:`publish` (the values in
    effect, for ``/lj/get`` and OSCQuery).
    """

    def __init__(self, controls):
        self.controls = controls
        self._fx: dict[str, tuple[str, float, float, float]] = {}
        self._declared_keys: tuple = ()
        self._current: dict[str, float] = {}
        self.declare({})

    def declare(self, inputs: Mapping[str, tuple]) -> None:
        """Make truncation, noise and every scalar input in ``inputs`` addressable."""
        fx = fx_targets(inputs)
        c = self.controls
        c.declare_direct(TRUNCATION, 1.0, *TRUNCATION_RANGE,
                         "truncation psi (0-1 = psi 0..1; 1 = untruncated)")
        c.declare_direct(NOISE, 0.0, *NOISE_RANGE, "noise strength (0-1 = 0..1), all layers")
        for address, (key, default, lo, hi) in fx.items():
            c.declare_direct(address, default, lo, hi, f"shader input {key} (0-1 = {lo:g}..{hi:g})")
        c.retire_direct([a for a in self._fx if a not in fx])
        self._fx = fx

    def apply(self, params, overrides: Mapping[str, float]) -> None:
        """Write the held ``overrides`` (address -> real value) into ``params`` (a FrameParams)."""
        if not overrides:
            return
        for address, value in overrides.items():
            if address == TRUNCATION:
                params.truncation = value
            elif address == NOISE:
                params.noise = value
            else:
                target = self._fx.get(address)
                if target is not None:
                    params.uniforms[target[0]] = value

    def publish(self, params) -> None:
        """Tell the controls the values in effect this frame (real units)."""
        cur = self._current
        cur[TRUNCATION] = float(params.truncation)
        noise = params.noise
        try:
            cur[NOISE] = float(noise)
        except (TypeError, ValueError):  # per-layer noise: report the mean
            cur[NOISE] = float(sum(noise) / max(1, len(noise)))
        uniforms = params.uniforms
        for address, (key, default, _, _) in self._fx.items():
            v = uniforms.get(key, default)
            cur[address] = float(v) if not isinstance(v, (tuple, list)) else default
        self.controls.publish_direct(cur)
