"""The Generator protocol: what every image generator offers the engine.

A generator is a ``torch.nn.Module`` with a latent space in two stages, in the StyleGAN sense:
``z`` (``latent_dim``, standard normal) goes through ``mapping`` to a style vector ``w``
(``w_dim``); the synthesis network takes one style per layer, ``w_plus`` of shape
``[B, num_layers, w_dim]``, and returns images in ``[-1, 1]``. Generators without a mapping
network use the identity (``w_dim == latent_dim``).

Keyframes, walks and pushes all live in w space (see ``engine.mapping``); truncation is
``w_avg + psi * (w - w_avg)`` per layer and is applied by the runner, not the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class Generator(torch.nn.Module):
    """Base class for generators. Subclasses set the attributes and implement the two stages."""

    latent_dim: int
    w_dim: int
    num_layers: int
    resolution: tuple[int, int]  # (height, width)
    has_noise: bool = False

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Map ``z`` ``[B, latent_dim]`` to ``w`` ``[B, w_dim]``."""
        raise NotImplementedError

    def synthesize(self, w_plus: torch.Tensor, noise_strength: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Render ``w_plus`` ``[B, num_layers, w_dim]`` to images ``[B, 3, h, w]`` in ``[-1, 1]``."""
        raise NotImplementedError

    def layer_groups(self) -> dict[str, range]:
        """Named layer ranges for routing. Default: thirds of ``num_layers``."""
        n = self.num_layers
        a, b = max(1, round(n / 3)), max(1, round(2 * n / 3))
        return {
            "coarse": range(0, a),
            "middle": range(a, max(a + 1, b)) if n > 1 else range(0, 1),
            "fine": range(min(b, n - 1), n),
            "all": range(0, n),
        }

    def latent_space(self) -> "TorchLatentSpace":
        """The numpy-side view of this generator's latent space (for the mapping compiler)."""
        return TorchLatentSpace(self)


def z_from_seed(seed: int, latent_dim: int) -> np.ndarray:
    """The z vector (float32, standard normal) for ``seed``; the same on every machine."""
    return np.random.default_rng(int(seed)).standard_normal(latent_dim).astype(np.float32)


@dataclass
class TorchLatentSpace:
    """Adapter from a :class:`Generator` to :class:`engine.frame.LatentSpace` (numpy, CPU)."""

    generator: Generator

    def __post_init__(self) -> None:
        g = self.generator
        self.latent_dim = g.latent_dim
        self.w_dim = g.w_dim
        self.num_layers = g.num_layers
        self.w_avg = g.w_avg.detach().float().cpu().numpy().copy()

    def seed_to_w(self, seed: int) -> np.ndarray:
        z = torch.from_numpy(z_from_seed(seed, self.latent_dim))[None]
        device = self.generator.w_avg.device
        with torch.inference_mode():
            w = self.generator.mapping(z.to(device))
        return w[0].float().cpu().numpy()

    def layer_groups(self) -> dict[str, range]:
        return self.generator.layer_groups()
