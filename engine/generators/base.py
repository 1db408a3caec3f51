"""The Generator protocol: what every image generator offers the engine.

A generator is a ``torch.nn.Module`` with a latent space in two stages, in the StyleGAN sense:
``z`` (``latent_dim``, standard normal) goes through ``mapping`` to a style vector ``w``
(``w_dim``); the synthesis network takes one style per layer, ``w_plus`` of shape
``[B, num_layers, w_dim]``, and returns images in ``[-1, 1]``. Generators without a mapping
network use the identity (``w_dim == latent_dim``).

Keyframes, walks and pushes all live in w space (see ``engine.mapping``); truncation is
``w_avg + psi * (w - w_avg)`` per layer and is applied by the runner, not the generator.

Contract C1 (what the runner calls every frame, with static device tensors so a CUDA graph can
capture it)::

    synthesize(w_plus [B, num_layers, w_dim],
               noise_strength [num_layers] tensor (a 0-d tensor or float: every layer),
               params None | [P] tensor, in the order of ``param_names``) -> [B, 3, h, w] in [-1, 1]

Generator-specific parameters (``param_names``, ``param_ranges = {name: (default, lo, hi)}``) are
what a mapping drives through ``generator.<name>`` targets. Capabilities the runner looks at:
``has_noise`` (noise inputs exist), ``supports_half`` (float16 gives a usable picture),
``resizable`` (:meth:`Generator.set_resolution` works, so the resolution budget may render below
the model's size).
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
    #: Generator-specific inputs, in the order of the ``params`` tensor (see :meth:`synthesize`).
    param_names: tuple[str, ...] = ()
    #: ``{name: (default, lo, hi)}`` for every name in ``param_names``. Read-only.
    param_ranges: dict[str, tuple[float, float, float]] = {}
    #: float16 weights and activations give a usable picture (the runner uses it on CUDA).
    supports_half: bool = False
    #: :meth:`set_resolution` works (the resolution budget may render below ``resolution``).
    resizable: bool = False

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """Map ``z`` ``[B, latent_dim]`` to ``w`` ``[B, w_dim]``."""
        raise NotImplementedError

    def synthesize(self, w_plus: torch.Tensor, noise_strength: float | torch.Tensor = 0.0,
                   params: torch.Tensor | None = None) -> torch.Tensor:
        """Render ``w_plus`` ``[B, num_layers, w_dim]`` to images ``[B, 3, h, w]`` in ``[-1, 1]``.

        ``noise_strength`` is a ``[num_layers]`` tensor (0 = no noise in that layer); a 0-d
        tensor or a float applies to every layer (:func:`per_layer` turns either into the
        ``[num_layers]`` form). ``params`` is ``None`` (every default) or a ``[P]`` tensor in the
        order of :attr:`param_names`. Implementations must not turn tensor inputs into Python
        numbers (no ``float(t)``, ``.item()``, ``if t > 0``): the runner captures this call in a
        CUDA graph, where such a value would be frozen at capture time.
        """
        raise NotImplementedError

    def set_resolution(self, resolution: tuple[int, int]) -> None:
        """Render at ``(h, w)`` from now on (only when :attr:`resizable`). Not called per frame."""
        raise NotImplementedError(f"{type(self).__name__} renders at one resolution only")

    def default_params(self) -> torch.Tensor:
        """``[P]`` float32 tensor of every parameter's default (``P = len(param_names)``)."""
        return torch.tensor([float(self.param_ranges[n][0]) for n in self.param_names],
                            dtype=torch.float32)

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


def per_layer(noise_strength: float | torch.Tensor, num_layers: int,
              like: torch.Tensor) -> torch.Tensor:
    """``noise_strength`` as a ``[num_layers]`` tensor on ``like``'s device and dtype.

    A ``[num_layers]`` tensor comes back as is (cast if needed), a 0-d tensor is expanded (a view,
    no copy), a Python number becomes a new tensor. Never reads a tensor's value on the host.
    """
    if isinstance(noise_strength, torch.Tensor):
        t = noise_strength
        if t.dtype != like.dtype or t.device != like.device:
            t = t.to(like.device, like.dtype)
        if t.dim() == 0:
            return t.expand(num_layers)
        if t.shape != (num_layers,):
            raise ValueError(f"noise_strength must be a float or [{num_layers}], got {list(t.shape)}")
        return t
    return torch.full((num_layers,), float(noise_strength), dtype=like.dtype, device=like.device)


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
        self.has_noise = bool(getattr(g, "has_noise", False))
        self.param_names = tuple(getattr(g, "param_names", ()))
        self.param_ranges = dict(getattr(g, "param_ranges", {}) or {})

    def seed_to_w(self, seed: int) -> np.ndarray:
        z = torch.from_numpy(z_from_seed(seed, self.latent_dim))[None]
        device = self.generator.w_avg.device
        with torch.inference_mode():
            w = self.generator.mapping(z.to(device))
        return w[0].float().cpu().numpy()

    def layer_groups(self) -> dict[str, range]:
        return self.generator.layer_groups()
