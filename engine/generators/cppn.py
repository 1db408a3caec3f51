"""The built-in generator: a style-modulated CPPN that needs no weights.

A compositional pattern-producing network maps every pixel's coordinates through a few small
layers to a colour. Here each layer is *modulated by a style vector* (one row of ``w_plus``), the
way StyleGAN's synthesis layers are, so the engine's per-layer routing means something:

====================  =========  ===============================================================
style row             group      what it shapes
====================  =========  ===============================================================
0, 1                  coarse     geometry: the x/y Fourier bases, the radial term, the scale
2, 3                  middle     structure: the two hidden mixing layers
4, 5                  fine       colour and texture: the palette matrix, its bias, the grain
====================  =========  ===============================================================

All weights are drawn from a fixed seed, so every machine builds the same network and a seed means
the same picture everywhere. Every operation is smooth in ``w``, so latent walks are smooth.

Cost is dominated by per-pixel passes over ``channels x H x W`` floats, so the layer-0
pre-activation is computed *separably* (a ``[C, W]`` and a ``[C, H]`` table broadcast-added) and
all intermediate tensors live in a workspace reused from frame to frame: a frame allocates
nothing once the workspace exists.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.generators.base import Generator

_WEIGHT_SEED = 0x1A7E  # the network's identity: change it and every saved seed changes look


class _Affine(nn.Module):
    """``w -> base + scale * (w @ A)``: a style vector to modulation values, fixed random A."""

    def __init__(self, w_dim: int, n: int, scale: float, base: float, gen: torch.Generator):
        super().__init__()
        self.register_buffer("weight", torch.randn(w_dim, n, generator=gen) * (scale / math.sqrt(w_dim)))
        self.base = base

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.addmm(torch.full((1, self.weight.shape[1]), self.base, dtype=w.dtype,
                                      device=w.device), w, self.weight)


class CPPNGenerator(Generator):
    """Style-modulated CPPN. ``resolution`` is ``(height, width)``; any size works.

    Parameters
    ----------
    resolution:
        Output size ``(h, w)`` in pixels.
    channels:
        Hidden width per pixel. Cost grows linearly with it; 12 is a good balance on a CPU.
    bases:
        Fourier frequencies per axis in layer 0 (each gives a sine and a cosine basis function).
    """

    latent_dim = 64
    w_dim = 64
    num_layers = 6
    has_noise = True

    def __init__(self, resolution: tuple[int, int] = (256, 256), channels: int = 12, bases: int = 6):
        super().__init__()
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.channels = c = int(channels)
        self.bases = f = int(bases)
        gen = torch.Generator().manual_seed(_WEIGHT_SEED)
        wd = self.w_dim

        # Mapping network: z -> w, three leaky-ReLU layers, as in StyleGAN but small.
        self.map_weights = nn.ParameterList(
            [nn.Parameter(torch.randn(wd, wd, generator=gen) * math.sqrt(2.0 / wd), requires_grad=False)
             for _ in range(3)])

        # Layer 0 (styles 0 and 1): separable pre-activation from Fourier bases in x and y.
        freqs = torch.linspace(0.6, 4.5, f)
        self.register_buffer("freqs", freqs * (1.0 + 0.15 * torch.randn(f, generator=gen)))
        self.register_buffer("phases", torch.rand(f, generator=gen) * 2 * math.pi)
        self.a_x = _Affine(wd, c * 2 * f, scale=0.5, base=0.0, gen=gen)
        self.a_y = _Affine(wd, c * 2 * f, scale=0.5, base=0.0, gen=gen)
        self.a_r = _Affine(wd, c, scale=2.0, base=0.0, gen=gen)          # radial term
        self.a_b0 = _Affine(wd, c, scale=1.5, base=0.0, gen=gen)         # bias
        self.a_scale = _Affine(wd, c, scale=0.35, base=1.0, gen=gen)     # style 1: pattern scale
        self.register_buffer("base_x", torch.randn(c, 2 * f, generator=gen) * 0.45)
        self.register_buffer("base_y", torch.randn(c, 2 * f, generator=gen) * 0.45)

        # Layers 1 and 2 (styles 2 and 3): modulated 1x1 mixing with sine activations.
        self.register_buffer("w1", torch.randn(c, c, generator=gen) * (1.3 / math.sqrt(c)))
        self.register_buffer("w2", torch.randn(c, c, generator=gen) * (1.3 / math.sqrt(c)))
        self.a_m1 = _Affine(wd, c, scale=0.5, base=1.0, gen=gen)
        self.a_b1 = _Affine(wd, c, scale=1.2, base=0.0, gen=gen)
        self.a_m2 = _Affine(wd, c, scale=0.5, base=1.0, gen=gen)
        self.a_b2 = _Affine(wd, c, scale=1.2, base=0.0, gen=gen)

        # Output (styles 4 and 5): palette matrix, bias and grain.
        self.register_buffer("w_out", torch.randn(3, c, generator=gen) * (1.0 / math.sqrt(c)))
        self.register_buffer("bias_out", torch.tensor([[0.05, -0.05, 0.0]]))
        self.a_mo = _Affine(wd, 3 * c, scale=0.6, base=0.0, gen=gen)
        self.a_bo = _Affine(wd, 3, scale=0.3, base=0.0, gen=gen)
        self.a_noise = _Affine(wd, c, scale=0.5, base=1.0, gen=gen)

        with torch.no_grad():
            z = torch.randn(4096, self.latent_dim, generator=gen)
            self.register_buffer("w_avg", self.mapping(z).mean(0))
        self._workspace: dict = {}

    # -- mapping -------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for i, weight in enumerate(self.map_weights):
            x = x @ weight
            if i < len(self.map_weights) - 1:
                x = nn.functional.leaky_relu(x, 0.2) * math.sqrt(2.0)
        return x * (1.0 / math.sqrt(2.0))

    # -- synthesis -----------------------------------------------------------------------------
    def _workspace_for(self, batch: int, dtype: torch.dtype, device: torch.device) -> dict:
        key = (batch, dtype, device)
        ws = self._workspace.get(key)
        if ws is not None:
            return ws
        h, w = self.resolution
        c, f = self.channels, self.bases
        aspect = w / h
        xs = torch.linspace(-aspect, aspect, w, device=device, dtype=dtype)
        ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
        ang_x = xs[None, :] * self.freqs.to(device, dtype)[:, None] + self.phases.to(device, dtype)[:, None]
        ang_y = ys[None, :] * self.freqs.to(device, dtype)[:, None] - self.phases.to(device, dtype)[:, None]
        gen = torch.Generator().manual_seed(_WEIGHT_SEED + h * 7919 + w)
        ws = {
            "phi_x": torch.cat([ang_x.sin(), ang_x.cos()]),                    # [2F, W]
            "phi_y": torch.cat([ang_y.sin(), ang_y.cos()]),                    # [2F, H]
            "r": (xs[None, :].square() + ys[:, None].square()).sqrt().reshape(1, 1, h * w),
            "grain": torch.randn(1, 1, h * w, generator=gen).to(device, dtype),
            # Hidden states carry an extra constant-1 row so each layer's bias folds into its
            # matrix: one bmm per layer, no separate pass to broadcast a bias.
            "h0": torch.ones(batch, c + 1, h * w, device=device, dtype=dtype),
            "h1": torch.ones(batch, c + 1, h * w, device=device, dtype=dtype),
            "out": torch.empty(batch, 3, h * w, device=device, dtype=dtype),
        }
        self._workspace[key] = ws
        return ws

    def synthesize(self, w_plus: torch.Tensor, noise_strength: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Render ``w_plus`` ``[B, 6, 64]`` to ``[B, 3, h, w]`` in ``[-1, 1]``.

        The returned tensor is a view of this generator's workspace: it is overwritten by the next
        call, so copy it if it must outlive the frame.
        """
        b = w_plus.shape[0]
        h, w = self.resolution
        c, f = self.channels, self.bases
        ws = self._workspace_for(b, w_plus.dtype, w_plus.device)
        s = [w_plus[:, i] for i in range(self.num_layers)]

        # Layer 0: sin(scale * (Ax phi(x) + Ay phi(y) + r * kr + b)), computed separably.
        scale = self.a_scale(s[1])                                            # [B, C]
        ax = (self.base_x + self.a_x(s[0]).view(b, c, 2 * f)) @ ws["phi_x"]   # [B, C, W]
        ay = (self.base_y + self.a_y(s[1]).view(b, c, 2 * f)) @ ws["phi_y"]   # [B, C, H]
        bias0 = self.a_b0(s[0])
        ax.add_(bias0[:, :, None]).mul_(scale[:, :, None])
        ay.mul_(scale[:, :, None])
        h0, h1 = ws["h0"], ws["h1"]
        x0 = h0[:, :c]
        torch.add(ax[:, :, None, :], ay[:, :, :, None], out=x0.view(b, c, h, w))
        x0.addcmul_((self.a_r(s[0]) * scale)[:, :, None], ws["r"])
        x0.sin_()

        # Layers 1, 2: modulated mixing (weights scaled per input channel by the style), the
        # bias riding in the last column against the constant row.
        m1 = torch.cat([self.w1[None] * self.a_m1(s[2])[:, None, :], self.a_b1(s[2])[:, :, None]], 2)
        x1 = torch.bmm(m1, h0, out=h1[:, :c])
        x1.sin_()
        m2 = torch.cat([self.w2[None] * self.a_m2(s[3])[:, None, :], self.a_b2(s[3])[:, :, None]], 2)
        x2 = torch.bmm(m2, h1, out=x0)
        if float(noise_strength) != 0.0:
            x2.addcmul_((self.a_noise(s[5]) * noise_strength)[:, :, None], ws["grain"])
        x2.sin_()

        # Output: palette matrix (style 4) and bias (style 5), squashed into [-1, 1].
        mo = self.w_out[None] + self.a_mo(s[4]).view(b, 3, c) * (1.0 / math.sqrt(c))
        mo = torch.cat([mo, (self.bias_out + self.a_bo(s[5]))[:, :, None]], 2)
        out = torch.bmm(mo, h0, out=ws["out"])
        out.tanh_()
        return out.view(b, 3, h, w)
