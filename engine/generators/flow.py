"""The second built-in family, ``builtin:flow``: a domain-warped wave field with a cosine palette.

Liquid, marbled pictures in the spirit of MilkDrop's warps, from no weights at all. Every pixel's
coordinates are swirled, then folded twice by plane waves (a domain warp), then a sum of plane
waves gives one value ``t`` that a cosine palette turns into colour:

====================  =========  ===============================================================
style row             group      what it shapes
====================  =========  ===============================================================
0, 1                  coarse     the two warps: their direction, frequency, phase and depth
2, 3                  middle     the wave field: directions, frequencies, phases, weights
4, 5                  fine       the palette (frequency and phase per channel, brightness,
                                 contrast) and a fine ripple (direction, depth, phase)
====================  =========  ===============================================================

Generator parameters (contract C1; mapping targets ``generator.zoom``, ``generator.swirl``):
``zoom`` (default 1, 0.25..4) scales the picture about its centre, ``swirl`` (default 0, -3..3)
turns it by an angle that grows with the squared radius.

Noise inputs, one per layer: 0 and 1 add a smooth field to the two warps (the picture wobbles), 2
and 3 a white field to the wave field, 4 to the ripple, 5 full-resolution grain.

Cost: everything up to ``t`` runs on a grid with half the rows and columns (the field is smooth at
the pixel scale), as a few matrix products over a ``[x, y, 1]`` coordinate stack and about a
dozen ``sin`` passes at a quarter of the pixels; ``t`` is upsampled (bilinear, 2x) and only the
palette runs at full resolution, so contours stay sharp, with the CPPN's cheap sine-like wave
instead of ``cos`` (no transcendental per pixel). All tensors live
in a workspace reused from frame to frame.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.generators.base import Generator, per_layer
from engine.generators.cppn import _UP, _WAVE, _Affine, _center_styles, _upsample2x_, _wave_

_WEIGHT_SEED = 0xF70  # the network's identity: change it and every saved seed changes look
_WAVES = 6


class FlowGenerator(Generator):
    """Domain-warped wave field. ``resolution`` is ``(height, width)``; any size works."""

    latent_dim = 64
    w_dim = 64
    num_layers = 6
    has_noise = True
    resizable = True
    supports_half = True
    param_names = ("zoom", "swirl")
    param_ranges = {"zoom": (1.0, 0.25, 4.0), "swirl": (0.0, -3.0, 3.0)}

    def __init__(self, resolution: tuple[int, int] = (256, 256)):
        super().__init__()
        self.resolution = (int(resolution[0]), int(resolution[1]))
        gen = torch.Generator().manual_seed(_WEIGHT_SEED)
        wd, k = self.w_dim, _WAVES

        self.map_weights = nn.ParameterList(
            [nn.Parameter(torch.randn(wd, wd, generator=gen) * math.sqrt(2.0 / wd), requires_grad=False)
             for _ in range(2)])

        def directions(n: int, lo: float, hi: float) -> torch.Tensor:
            angle = torch.rand(n, generator=gen) * 2 * math.pi
            radius = lo + (hi - lo) * torch.rand(n, generator=gen)
            return torch.stack([angle.cos(), angle.sin()], 1) * radius[:, None]   # [n, 2]

        # Warps (styles 0, 1): one plane wave each, displacing x, then y.
        self.register_buffer("warp_k", directions(2, 1.2, 2.6))
        self.a_warp = nn.ModuleList([_Affine(wd, 4, scale=0.6, base=0.0, gen=gen) for _ in range(2)])
        # Wave field (styles 2, 3): three waves each.
        self.register_buffer("wave_k", directions(k, 1.5, 5.0))
        self.register_buffer("wave_a", 0.6 + 0.4 * torch.rand(k, generator=gen))
        self.a_wave = nn.ModuleList([_Affine(wd, 4 * (k // 2), scale=0.5, base=0.0, gen=gen)
                                     for _ in range(2)])
        # Palette (style 4: frequency and phase per channel; style 5: brightness and contrast)
        # and ripple (style 4: direction; style 5: depth, phase).
        self.register_buffer("pal_d", torch.tensor([0.0, 0.33, 0.67]))
        self.a_pal_c = _Affine(wd, 3, scale=0.15, base=0.65, gen=gen)
        self.a_pal_d = _Affine(wd, 3, scale=0.8, base=0.0, gen=gen)
        self.a_pal_a = _Affine(wd, 3, scale=0.12, base=0.0, gen=gen)
        self.a_pal_b = _Affine(wd, 1, scale=0.1, base=0.85, gen=gen)
        self.register_buffer("ripple_k", directions(1, 40.0, 40.0))
        self.a_ripple_dir = _Affine(wd, 1, scale=1.0, base=0.0, gen=gen)
        self.a_ripple = _Affine(wd, 2, scale=1.0, base=0.0, gen=gen)     # depth (offset), phase
        self.a_grain = _Affine(wd, 3, scale=0.02, base=0.08, gen=gen)

        _center_styles(self, gen)
        self._workspace: dict = {}

    def set_resolution(self, resolution: tuple[int, int]) -> None:
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self._workspace = {}

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        x = nn.functional.leaky_relu(x @ self.map_weights[0], 0.2) * math.sqrt(2.0)
        return x @ self.map_weights[1] * (1.0 / math.sqrt(2.0))

    def _workspace_for(self, batch: int, dtype: torch.dtype, device: torch.device) -> dict:
        key = (batch, dtype, device)
        ws = self._workspace.get(key)
        if ws is not None:
            return ws
        h, w = self.resolution
        hh, hw = (h + 1) // 2, (w + 1) // 2
        aspect = w / h

        def coords(n_full: int, n_half: int, extent: float) -> torch.Tensor:
            i = torch.arange(-1, n_half + 1, dtype=torch.float64)
            return -extent + 2 * extent * (2 * i + 0.5) / max(n_full - 1, 1)

        ys, xs = torch.meshgrid(coords(h, hh, 1.0), coords(w, hw, aspect), indexing="ij")
        n_lo = ys.numel()
        gen = torch.Generator().manual_seed(_WEIGHT_SEED + h * 7919 + w)
        smooth = torch.randn(1, 1, max(2, (hh + 2) // 16), max(2, (hw + 2) // 16), generator=gen)
        smooth = nn.functional.interpolate(smooth, size=(hh + 2, hw + 2), mode="bicubic", align_corners=True)
        smooth = (smooth - smooth.mean()) / smooth.std().clamp_min(1e-6)
        dev = dict(device=device, dtype=dtype)
        ws = {
            "xy": torch.stack([xs.reshape(-1), ys.reshape(-1)]).to(**dev),              # [2, N]
            "r2": (xs.square() + ys.square()).reshape(1, 1, -1).to(**dev),              # [1, 1, N]
            "smooth": smooth.reshape(1, 1, -1).to(**dev),
            "white": torch.randn(1, 1, n_lo, generator=gen).to(**dev),
            "grain": torch.randn(1, 1, 2 * hh * 2 * hw, generator=gen).to(**dev),
            # q: the warped coordinates with a constant row, so a wave's phase rides in its matrix
            "q": torch.ones(batch, 3, n_lo, **dev),
            "ang": torch.empty(batch, 1, n_lo, **dev),
            "cs": torch.empty(batch, 1, n_lo, **dev),
            "sn": torch.empty(batch, 1, n_lo, **dev),
            "waves": torch.empty(batch, _WAVES, n_lo, **dev),
            "t": torch.empty(batch, 1, n_lo, **dev),
            "mid": torch.empty(batch, hh + 2, 2 * hw, **dev),
            "t_full": torch.empty(batch, 1, 2 * hh * 2 * hw, **dev),
            "out": torch.empty(batch, 3, 2 * hh * 2 * hw, **dev),
            "tmp": torch.empty(batch, 3, 2 * hh * 2 * hw, **dev),
            "defaults": self.default_params().to(**dev),
            "hidden": (hh, hw),
        }
        self._workspace[key] = ws
        return ws

    def synthesize(self, w_plus: torch.Tensor, noise_strength: float | torch.Tensor = 0.0,
                   params: torch.Tensor | None = None) -> torch.Tensor:
        """Render ``w_plus`` ``[B, 6, 64]`` to ``[B, 3, h, w]`` in ``[-1, 1]`` (a view of this
        generator's workspace, overwritten by the next call)."""
        b = w_plus.shape[0]
        h, w = self.resolution
        ws = self._workspace_for(b, w_plus.dtype, w_plus.device)
        hh, hw = ws["hidden"]
        s = [w_plus[:, i] for i in range(self.num_layers)]
        noise = per_layer(noise_strength, self.num_layers, w_plus)
        p = ws["defaults"] if params is None else params.to(w_plus.dtype)
        q, ang, cs, sn = ws["q"], ws["ang"], ws["cs"], ws["sn"]
        x, y = q[:, 0:1], q[:, 1:2]

        # Zoom and swirl: rotate each point by swirl * r^2, scale by 1 / zoom.
        torch.mul(ws["r2"], p[1], out=ang)
        torch.cos(ang, out=cs)
        torch.sin(ang, out=sn)
        inv_zoom = 1.0 / p[0]
        cs.mul_(inv_zoom)
        sn.mul_(inv_zoom)
        xy = ws["xy"]                                                               # [2, N]
        torch.mul(cs, xy[0], out=x).addcmul_(sn, xy[1], value=-1.0)
        torch.mul(sn, xy[0], out=y).addcmul_(cs, xy[1])

        # Two warps (coarse styles): x += a sin(k.q + phi), then y += a sin(k.q + phi).
        for i, (row, n_i) in enumerate(((x, 0), (y, 1))):
            st = self.a_warp[i](s[i])                                               # [B, 4]
            turn = st[:, 0:1] * 0.6
            c, sn_ = turn.cos(), turn.sin()
            k0 = self.warp_k[i]
            kx = (c * k0[0] - sn_ * k0[1]) * (1.0 + 0.3 * st[:, 1:2])
            ky = (sn_ * k0[0] + c * k0[1]) * (1.0 + 0.3 * st[:, 1:2])
            m = torch.cat([kx, ky, st[:, 2:3] * 3.0], 1)[:, None, :]                 # [B, 1, 3]
            torch.bmm(m, q, out=ang).sin_()
            depth = (0.45 + 0.2 * st[:, 3:4])[:, :, None]
            row.addcmul_(ang, depth)
            row.addcmul_(ws["smooth"], noise[n_i] * 0.25)

        # Wave field (middle styles): t = sum_k a_k sin(k.q + phi_k), unit spread.
        half = _WAVES // 2
        rows, styles = [], [self.a_wave[i](s[2 + i]).view(b, half, 4) for i in range(2)]
        for i, st in enumerate(styles):
            k0 = self.wave_k[i * half:(i + 1) * half]
            turn = st[..., 0] * 0.5
            c, sn_ = turn.cos(), turn.sin()
            f = 1.0 + 0.25 * st[..., 1]
            rows.append(torch.stack([(c * k0[:, 0] - sn_ * k0[:, 1]) * f,
                                     (sn_ * k0[:, 0] + c * k0[:, 1]) * f, st[..., 2] * 3.0], 2))
        waves = torch.bmm(torch.cat(rows, 1), q, out=ws["waves"]).sin_()               # [B, K, N]
        amp = self.wave_a * (1.0 + 0.3 * torch.cat([st[..., 3] for st in styles], 1))  # [B, K]
        amp = amp * torch.rsqrt(amp.square().sum(1, keepdim=True) * 0.5)
        t = torch.bmm(amp[:, None, :], waves, out=ws["t"])                             # [B, 1, N]
        t.addcmul_(ws["white"], noise[2] * 0.35 + noise[3] * 0.2)

        # Ripple (fine styles): a fine plane wave on t.
        turn = self.a_ripple_dir(s[4])
        rk = self.ripple_k[0]
        rst = self.a_ripple(s[5])
        m = torch.cat([turn.cos() * rk[0] - turn.sin() * rk[1], turn.sin() * rk[0] + turn.cos() * rk[1],
                       rst[:, 1:2] * 6.0], 1)[:, None, :]
        torch.bmm(m, q, out=ang).sin_()
        ang.addcmul_(ws["white"], noise[4])
        t.addcmul_(ang, (0.2 + 0.1 * rst[:, 0:1]).clamp_min(0.0)[:, :, None])

        # Full resolution: upsample t, cosine palette, grain.
        t_full = ws["t_full"]
        _upsample2x_(t.view(b, hh + 2, hw + 2), ws["mid"], t_full.view(b, 2 * hh, 2 * hw))
        out = ws["out"]
        # cos(2 pi (c t + d)) in turns, through the cheap sine-like wave (no transcendental per
        # pixel): a quarter turn ahead of the wave's sine is the cosine.
        freq = (self.a_pal_c(s[4]) * _UP)[:, :, None]                                  # [B, 3, 1]
        phase = (self.pal_d + self.a_pal_d(s[4]) / (2 * math.pi) + 0.25)[:, :, None]
        _wave_(torch.addcmul(phase.expand(b, 3, 1), freq, t_full, out=out), ws["tmp"])
        out.mul_(self.a_pal_b(s[5])[:, :, None] * _WAVE).add_(self.a_pal_a(s[5])[:, :, None])
        out.addcmul_((self.a_grain(s[5]) * noise[5])[:, :, None], ws["grain"])
        out.clamp_(-1.0, 1.0)
        return out.view(b, 3, 2 * hh, 2 * hw)[:, :, :h, :w]
