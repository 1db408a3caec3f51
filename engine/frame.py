"""The values that travel between stages, once per frame.

``Features`` is what the analyser heard (name -> float, or a small float32 vector such as
``chroma``). ``FrameParams`` is what the mapping decided for one frame: everything the generator
and the shader chain need, and nothing else. Both are plain data so every stage can be tested
without a sound card, a GPU or a GL context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Union

import numpy as np

FeatureValue = Union[float, np.ndarray]
Features = dict  # dict[str, FeatureValue]


@dataclass
class FrameParams:
    """One frame's parameters, computed from audio up to ``t`` (seconds on the audio clock).

    ``w_plus`` is float32 ``[num_layers, w_dim]`` in the generator's w space, before truncation;
    the generator runner applies ``w_avg + truncation * (w - w_avg)``. ``noise`` is the noise
    strength: one float for every layer, or float32 ``[num_layers]`` when the mapping routes
    noise per layer. ``uniforms`` holds shader inputs by ``"<effect>.<input>"`` (e.g.
    ``"feedback.amount"``); ``generator`` the generator-specific parameters by name (a name
    missing from it takes the generator's default).
    """

    t: float
    w_plus: np.ndarray
    truncation: float = 1.0
    noise: Union[float, np.ndarray] = 0.0
    uniforms: dict[str, float] = field(default_factory=dict)
    generator: dict[str, float] = field(default_factory=dict)


class LatentSpace(Protocol):
    """What the mapping compiler needs to know about a generator's latent space.

    Implemented by :class:`engine.generators.base.Generator` (via ``latent_space()``); tests may
    pass any object with these members.
    """

    latent_dim: int
    w_dim: int
    num_layers: int
    w_avg: np.ndarray  # float32 [w_dim]

    def seed_to_w(self, seed: int) -> np.ndarray:
        """The w vector (float32 [w_dim]) of the z drawn from ``seed``; deterministic."""
        ...

    def layer_groups(self) -> dict[str, range]:
        """Named layer ranges: at least ``coarse``, ``middle``, ``fine`` (may overlap when few)."""
        ...
