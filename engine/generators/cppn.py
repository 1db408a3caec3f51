"""The built-in generator: a style-modulated CPPN that needs no weights.

A compositional pattern-producing network maps every pixel's coordinates through a few small
layers to a colour. Here each layer is *modulated by a style vector* (one row of ``w_plus``), the
way StyleGAN's synthesis layers are, so the engine's per-layer routing means something:

====================  =========  ===============================================================
style row             group      what it shapes
====================  =========  ===============================================================
0, 1                  coarse     geometry: the x/y Fourier bases, the radial term, the scale
2, 3                  middle     structure: the two hidden mixing layers
4, 5                  fine       colour and texture: palette, hue, cast, contrast, grain
====================  =========  ===============================================================

All weights are drawn from a fixed seed, so every machine builds the same network and a seed means
the same picture everywhere. Every operation is smooth in ``w``, so latent walks are smooth.

Where the time goes, and how it is kept small (a frame is a handful of passes over memory):

* **Hidden layers on a half-resolution grid.** The patterns are smooth at the pixel scale, so the
  hidden layers run on a grid with half the rows and columns (a quarter of the pixels, plus a
  one-sample border). Only the 3-channel *pre-activation* of the output is upsampled (bilinear,
  2x, four strided adds), and the squashing nonlinearity runs after it at full resolution, so
  contours stay pixel-sharp. Grain is added at full resolution too.
* **Layer 0 is separable.** Its argument is ``u_c(x) + v_c(y)`` (Fourier bases, plus ``x^2`` and
  ``y^2`` for a radial term), so ``sin(u + v) = sin u cos v + cos u sin v`` comes from ``[C, W]``
  and ``[C, H]`` tables in two broadcast passes; no transcendental runs per pixel.
* **No transcendental per pixel at all.** Hidden layers use a periodic *wave*, a piecewise
  quadratic with period one turn (``t - round(t)``, then ``t - 2 t |t|``): continuously
  differentiable, within 6 % of a sine and four cheap passes instead of one slow ``sin``. The
  output squash is the cubic ``1.5 x - 0.5 x^3`` on ``[-1, 1]`` (C1, exactly saturating).
* **Colour is balanced per seed.** The palette is rotated about the grey axis by a hue angle from
  style 4, and most of the picture's mean chroma is taken out through the bias (computed from the
  hidden means, so it costs no pass), so no hue dominates across seeds or within a picture.

All intermediate tensors live in a workspace reused from frame to frame: a frame allocates nothing
per pixel once the workspace exists.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from engine.generators.base import Generator, per_layer

_WEIGHT_SEED = 0x1A7E  # the network's identity: change it and every saved seed changes look
_TURN = 1.0 / (2.0 * math.pi)  # radians -> turns, the wave's period
_WAVE = 8.0  # the wave's peak is 1/8; this brings it back to a sine's amplitude
_UP = 0.75 * 0.75  # bilinear 2x weights are 3/4, 1/4 per axis: the upsampler adds x + y/3 instead


class _Affine(nn.Module):
    """``w -> base + scale * ((w - w_avg) @ A)``: a style vector to modulation values, fixed A.

    Centred on ``w_avg`` (see :meth:`center`), so the average style gives ``base`` and no
    modulation carries a bias shared by every seed (such a bias once tinted most seeds blue).
    """

    def __init__(self, w_dim: int, n: int, scale: float, base: float, gen: torch.Generator):
        super().__init__()
        self.register_buffer("weight", torch.randn(w_dim, n, generator=gen) * (scale / math.sqrt(w_dim)))
        self.register_buffer("bias", torch.full((1, n), float(base)))
        self.base = base

    def center(self, w_avg: torch.Tensor) -> None:
        self.bias = self.base - w_avg[None] @ self.weight

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.bias, w, self.weight)


def _wave_(x: torch.Tensor, tmp: torch.Tensor) -> torch.Tensor:
    """In place: a sine-like wave of ``x`` in turns, ``t - 2 t |t|`` with ``t = x - round(x)``.

    Peak ``1/8`` at a quarter turn; value and slope are continuous everywhere.
    """
    torch.round(x, out=tmp)
    x.sub_(tmp)
    torch.abs(x, out=tmp)
    return x.addcmul_(x, tmp, value=-2.0)


def _hue_basis() -> torch.Tensor:
    """``[3, 3, 3]``: identity, cross-product matrix and projection of the grey axis (Rodrigues)."""
    k = 1.0 / math.sqrt(3.0)
    cross = torch.tensor([[0.0, -k, k], [k, 0.0, -k], [-k, k, 0.0]])
    return torch.stack([torch.eye(3), cross, torch.full((3, 3), 1.0 / 3.0)])


def _hue_rotation(theta: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``[B, 1]`` angles -> ``[B, 3, 3]`` rotations about the grey axis (1, 1, 1) of RGB."""
    c = theta.cos()
    coef = torch.cat([c, theta.sin(), 1.0 - c], 1)                              # [B, 3]
    return (coef @ basis.view(3, 9)).view(-1, 3, 3)


def _upsample2x_(lo: torch.Tensor, mid: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Bilinear 2x of ``lo`` ``[N, h+2, w+2]`` (one-sample border) into ``out`` ``[N, 2h, 2w]``.

    Unnormalised: every output is ``(3/4)^2`` times the bilinear value (folded into the palette).
    ``mid`` ``[N, h+2, 2w]`` holds the pass along x.
    """
    n, h2, w2 = lo.shape[0], lo.shape[1] - 2, lo.shape[2] - 2
    m = mid.view(n, h2 + 2, w2, 2)
    centre = lo[:, :, 1:-1]
    torch.add(centre, lo[:, :, :-2], alpha=1.0 / 3.0, out=m[..., 0])
    torch.add(centre, lo[:, :, 2:], alpha=1.0 / 3.0, out=m[..., 1])
    o = out.view(n, h2, 2, 2 * w2)
    centre = mid[:, 1:-1]
    torch.add(centre, mid[:, :-2], alpha=1.0 / 3.0, out=o[:, :, 0])
    torch.add(centre, mid[:, 2:], alpha=1.0 / 3.0, out=o[:, :, 1])
    return out


def _center_styles(net: Generator, gen: torch.Generator) -> None:
    """Register ``w_avg`` (the mean w of 4096 random z) and centre every style affine on it, so
    the average latent gives each affine's base value (a built-in generator's last init step)."""
    with torch.no_grad():
        z = torch.randn(4096, net.latent_dim, generator=gen)
        net.register_buffer("w_avg", net.mapping(z).mean(0))
        for module in net.modules():
            if isinstance(module, _Affine):
                module.center(net.w_avg)


class CPPNGenerator(Generator):
    """Style-modulated CPPN. ``resolution`` is ``(height, width)``; any size works.

    Parameters
    ----------
    resolution:
        Output size ``(h, w)`` in pixels. The hidden layers run at half of it in each axis.
    channels:
        Hidden width per pixel. Cost of the hidden layers grows linearly with it.
    bases:
        Fourier frequencies per axis in layer 0 (each gives a sine and a cosine basis function).
    """

    latent_dim = 64
    w_dim = 64
    num_layers = 6
    has_noise = True
    resizable = True
    supports_half = True

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

        # Layer 0 (styles 0 and 1): u_c(x) + v_c(y) from Fourier bases, x^2 and y^2 (radial).
        freqs = torch.linspace(0.6, 4.5, f)
        self.register_buffer("freqs", freqs * (1.0 + 0.15 * torch.randn(f, generator=gen)))
        self.register_buffer("phases", torch.rand(f, generator=gen) * 2 * math.pi)
        self.a_x = _Affine(wd, c * 2 * f, scale=0.5, base=0.0, gen=gen)
        self.a_y = _Affine(wd, c * 2 * f, scale=0.5, base=0.0, gen=gen)
        self.a_r = _Affine(wd, c, scale=1.5, base=0.0, gen=gen)          # radial term (r^2)
        self.a_b0 = _Affine(wd, c, scale=1.5, base=0.0, gen=gen)         # bias
        self.a_scale = _Affine(wd, c, scale=0.35, base=1.0, gen=gen)     # style 1: pattern scale
        self.register_buffer("base_x", torch.randn(c, 2 * f, generator=gen) * 0.45)
        self.register_buffer("base_y", torch.randn(c, 2 * f, generator=gen) * 0.45)

        # Layers 1 and 2 (styles 2 and 3): modulated 1x1 mixing, then the wave.
        self.register_buffer("w1", torch.randn(c, c, generator=gen) * (1.6 / math.sqrt(c)))
        self.register_buffer("w2", torch.randn(c, c, generator=gen) * (1.6 / math.sqrt(c)))
        self.a_m1 = _Affine(wd, c, scale=0.5, base=1.0, gen=gen)
        self.a_b1 = _Affine(wd, c, scale=1.2, base=0.0, gen=gen)
        self.a_m2 = _Affine(wd, c, scale=0.5, base=1.0, gen=gen)
        self.a_b2 = _Affine(wd, c, scale=1.2, base=0.0, gen=gen)

        # Output (styles 4 and 5). The palette's rows are luma and two opponent chroma axes; each
        # picture is normalised in that space (mean and spread measured on a sparse lattice of the
        # hidden grid), then given its saturation, hue, cast and contrast from the styles, so no
        # seed comes out washed out, blown out or tinted by a bias shared by every seed.
        w_out = torch.randn(3, c, generator=gen)
        self.register_buffer("w_out", w_out / w_out.norm(dim=1, keepdim=True))
        # Opponent (luma, red-green, yellow-blue) -> RGB, every axis with unit gain per channel.
        self.register_buffer("opponent", torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]]).T
                             * torch.tensor([1.0, math.sqrt(1.5), math.sqrt(0.5)]))
        self.register_buffer("hue_basis", _hue_basis())
        self.a_mo = _Affine(wd, 3 * c, scale=0.35, base=0.0, gen=gen)    # style 4: palette
        self.a_sat = _Affine(wd, 1, scale=0.12, base=0.55, gen=gen)      # style 4: saturation
        self.a_hue = _Affine(wd, 1, scale=1.5, base=0.0, gen=gen)        # style 4: hue (radians)
        self.a_bo = _Affine(wd, 3, scale=0.12, base=0.0, gen=gen)        # style 5: cast (opponent)
        self.a_gain = _Affine(wd, 1, scale=0.08, base=0.5, gen=gen)      # style 5: contrast
        self.a_noise = _Affine(wd, 3, scale=0.02, base=0.1, gen=gen)     # style 5: grain per channel

        # Texture (fine styles): two plane waves of 8-16 cycles per picture height added to the
        # output before the squash, so they ripple the contours. Style 4 sets their frequency and
        # direction, style 5 their phase and their amplitude per opponent channel (mostly luma).
        self.register_buffer("tex_freq", torch.tensor([4.2, 6.3]) * (1.0 + 0.1 * torch.rand(2, generator=gen)))
        self.register_buffer("tex_angle", torch.rand(2, generator=gen) * math.pi)
        self.register_buffer("tex_amp", torch.tensor([[0.16, 0.13], [0.03, -0.04], [-0.02, 0.04]]))
        self.a_tex = _Affine(wd, 4, scale=0.5, base=0.0, gen=gen)        # style 4: log-frequency, angle
        self.a_tex_phase = _Affine(wd, 2, scale=3.0, base=0.0, gen=gen)  # style 5: phase (radians)
        self.a_tex_amp = _Affine(wd, 6, scale=0.12, base=0.0, gen=gen)   # style 5: amplitude

        # Noise inputs, one strength per layer (as in StyleGAN: coarse noise moves structure,
        # fine noise is grain). Two fixed fields on the hidden grid: a smooth one (about 12
        # blobs across) and a white one; each enters a layer as one extra column of its matrix.
        self.register_buffer("nw_coarse", torch.randn(2, c, generator=gen) * 0.9)   # noise 0, 1
        self.register_buffer("nw_detail", torch.randn(2, c, generator=gen) * 0.35)  # noise 2, 3
        self.register_buffer("nw_out", torch.tensor([0.35, 0.08, 0.08]))            # noise 4

        _center_styles(self, gen)
        self._workspace: dict = {}

    def set_resolution(self, resolution: tuple[int, int]) -> None:
        """Render at ``(h, w)`` from now on (any size; the workspace is rebuilt on the next frame)."""
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self._workspace = {}

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
        c = self.channels
        hh, hw = (h + 1) // 2, (w + 1) // 2         # hidden grid, without its border
        aspect = w / h

        def coords(n_full: int, n_half: int, extent: float) -> torch.Tensor:
            # Centres of pixel pairs (2i, 2i+1) for i = -1 .. n_half, in the full grid's frame.
            i = torch.arange(-1, n_half + 1, dtype=torch.float64)
            return (-extent + 2 * extent * (2 * i + 0.5) / max(n_full - 1, 1)).to(device, dtype)

        xs, ys = coords(w, hw, aspect), coords(h, hh, 1.0)
        freqs, phases = self.freqs.to(device, dtype)[:, None], self.phases.to(device, dtype)[:, None]
        ang_x, ang_y = xs[None, :] * freqs + phases, ys[None, :] * freqs - phases
        n_lo = (hh + 2) * (hw + 2)
        # The picture's statistics come from every ``step``-th hidden sample (about 3000 of them),
        # ``step`` prime to the row length so the samples spread over all columns.
        step = max(1, n_lo // 3000)
        while math.gcd(step, hw + 2) != 1:
            step += 1
        gen = torch.Generator().manual_seed(_WEIGHT_SEED + h * 7919 + w)
        # The noise fields (rows c+1, c+2 of the hidden states): smooth and white, unit spread.
        coarse = torch.randn(1, 1, max(2, (hh + 2) // 10), max(2, (hw + 2) // 10), generator=gen)
        coarse = nn.functional.interpolate(coarse, size=(hh + 2, hw + 2), mode="bicubic", align_corners=True)
        coarse = (coarse - coarse.mean()) / coarse.std().clamp_min(1e-6)
        white = torch.randn(1, 1, hh + 2, hw + 2, generator=gen)
        fields = torch.cat([coarse, white], 1).view(1, 2, n_lo).to(device, dtype)
        # Rows of h0: c hidden features, a constant 1 (biases ride in the matrices), the two
        # noise fields, the two texture waves. h1 has the first c + 3 of those.
        h0 = torch.ones(batch, c + 5, n_lo, device=device, dtype=dtype)
        h1 = torch.ones(batch, c + 3, n_lo, device=device, dtype=dtype)
        h0[:, c + 1:c + 3] = fields
        h1[:, c + 1:c + 3] = fields
        ws = {
            "phi_x": torch.cat([ang_x.sin(), ang_x.cos(), xs[None].square()]),   # [2F+1, w]
            "phi_y": torch.cat([ang_y.sin(), ang_y.cos(), ys[None].square()]),   # [2F+1, h]
            "grain": torch.randn(1, 1, 2 * hh * 2 * hw, generator=gen).to(device, dtype),
            # Hidden states carry the constant row and the noise fields so each layer's bias and
            # noise fold into its matrix: one bmm per layer, no pass to broadcast either.
            "h0": h0,
            "h1": h1,
            "xs": xs, "ys": ys,
            "tmp": torch.empty(batch, c, n_lo, device=device, dtype=dtype),
            "lo": torch.empty(batch, 3, n_lo, device=device, dtype=dtype),
            "mid": torch.empty(batch * 3, hh + 2, 2 * hw, device=device, dtype=dtype),
            "out": torch.empty(batch, 3, 2 * hh * 2 * hw, device=device, dtype=dtype),
            "sq": torch.empty(batch, 3, 2 * hh * 2 * hw, device=device, dtype=dtype),
            "three_halves": torch.full((), 1.5, device=device, dtype=dtype),
            "lattice": step,
            "sub": torch.empty(batch, c + 1, len(range(0, n_lo, step)), device=device, dtype=dtype),
            "gram": torch.empty(batch, c + 1, c + 1, device=device, dtype=dtype),
            "hidden": (hh, hw),
        }
        self._workspace[key] = ws
        return ws

    def synthesize(self, w_plus: torch.Tensor, noise_strength: float | torch.Tensor = 0.0,
                   params: torch.Tensor | None = None) -> torch.Tensor:
        """Render ``w_plus`` ``[B, 6, 64]`` to ``[B, 3, h, w]`` in ``[-1, 1]``.

        ``noise_strength`` (``[6]``, or one value for all) weighs one noise input per layer:
        0 and 1 add a smooth field to hidden layers 1 and 2 (the structure wobbles), 2 and 3 a
        white field to the same layers, 4 white noise to the colour output, 5 full-resolution
        grain. ``params`` is ignored (this generator has none).

        The returned tensor is a view of this generator's workspace: it is overwritten by the next
        call, so copy it if it must outlive the frame. (For odd sizes it is a cropped view.)
        """
        b = w_plus.shape[0]
        h, w = self.resolution
        c, f = self.channels, self.bases
        ws = self._workspace_for(b, w_plus.dtype, w_plus.device)
        hh, hw = ws["hidden"]
        s = [w_plus[:, i] for i in range(self.num_layers)]
        noise = per_layer(noise_strength, self.num_layers, w_plus)              # [6]

        # Layer 0: sin(u(x) + v(y)) = sin u cos v + cos u sin v, from per-axis tables.
        scale = self.a_scale(s[1])[:, :, None]                                   # [B, C, 1]
        radial = self.a_r(s[0])[:, :, None]
        cx = torch.cat([self.base_x + self.a_x(s[0]).view(b, c, 2 * f), radial], 2)
        cy = torch.cat([self.base_y + self.a_y(s[1]).view(b, c, 2 * f), radial], 2)
        u = (cx @ ws["phi_x"]).add_(self.a_b0(s[0])[:, :, None]).mul_(scale)     # [B, C, w]
        v = (cy @ ws["phi_y"]).mul_(scale)                                       # [B, C, h]
        h0, h1, tmp = ws["h0"], ws["h1"], ws["tmp"]
        x0 = h0[:, :c].view(b, c, hh + 2, hw + 2)
        torch.mul(u.sin()[:, :, None, :], v.cos()[:, :, :, None], out=x0)
        x0.addcmul_(u.cos()[:, :, None, :], v.sin()[:, :, :, None])

        # Layers 1, 2: modulated mixing (weights scaled per input channel by the style), the
        # bias and the noise weights riding in the last columns against the constant row and
        # the noise fields; arguments are in turns.
        n1 = torch.stack([self.nw_coarse[0] * noise[0], self.nw_detail[0] * noise[2]], 1)  # [C, 2]
        n2 = torch.stack([self.nw_coarse[1] * noise[1], self.nw_detail[1] * noise[3]], 1)
        m1 = torch.cat([self.w1[None] * self.a_m1(s[2])[:, None, :], self.a_b1(s[2])[:, :, None],
                        n1[None].expand(b, c, 2)], 2)
        _wave_(torch.bmm(m1.mul_(_TURN), h0[:, :c + 3], out=h1[:, :c]), tmp)
        m2 = torch.cat([self.w2[None] * (self.a_m2(s[3]) * _WAVE)[:, None, :], self.a_b2(s[3])[:, :, None],
                        n2[None].expand(b, c, 2)], 2)
        _wave_(torch.bmm(m2.mul_(_TURN), h1, out=h0[:, :c]), tmp)

        # Texture (styles 4, 5): two plane waves into rows c+3, c+4, separable like layer 0.
        tex = self.a_tex(s[4]).view(b, 2, 2)
        freq = (self.tex_freq * tex[:, :, 0].exp() * (2.0 * math.pi))[:, :, None]    # [B, 2, 1]
        angle = (self.tex_angle + tex[:, :, 1])[:, :, None]
        tu = (angle.cos() * freq) * ws["xs"] + self.a_tex_phase(s[5])[:, :, None]      # [B, 2, w]
        tv = (angle.sin() * freq) * ws["ys"]                                           # [B, 2, h]
        xt = h0[:, c + 3:].view(b, 2, hh + 2, hw + 2)
        torch.mul(tu.sin()[:, :, None, :], tv.cos()[:, :, :, None], out=xt)
        xt.addcmul_(tu.cos()[:, :, None, :], tv.sin()[:, :, :, None])

        # Output: statistics of the hidden features (with the constant row: means ride along),
        # then the palette normalised in opponent space and turned into RGB.
        sub = ws["sub"].copy_(h0[:, :c + 1, ::ws["lattice"]])
        gram = torch.bmm(sub, sub.transpose(1, 2), out=ws["gram"]).mul_(1.0 / sub.shape[2])
        palette = (self.w_out[None] + self.a_mo(s[4]).view(b, 3, c) * (1.0 / math.sqrt(c))) * _WAVE
        mean = palette @ gram[:, :c, c:]                                        # [B, 3, 1]
        var = ((palette @ gram[:, :c, :c]) * palette).sum(2, keepdim=True) - mean.square()
        chroma_var = var[:, 1:].mean(1, keepdim=True)
        norm = torch.cat([var[:, :1], chroma_var, chroma_var], 1).add_(1e-3).rsqrt_()
        norm = norm * torch.cat([torch.ones_like(chroma_var), self.a_sat(s[4])[:, :, None].expand(b, 2, 1)], 1)
        opp = torch.cat([palette, self.a_bo(s[5])[:, :, None] - mean], 2) * norm   # [B, 3, C+1]
        fields = torch.cat([torch.zeros_like(self.nw_out), self.nw_out * noise[4]]).view(2, 3).T  # [3, 2]
        texture = self.tex_amp + self.a_tex_amp(s[5]).view(b, 3, 2)                       # [B, 3, 2]
        opp = torch.cat([opp, fields[None].expand(b, 3, 2), texture], 2)                  # [B, 3, C+5]
        rgb = _hue_rotation(self.a_hue(s[4]), self.hue_basis) @ self.opponent * (self.a_gain(s[5]) * _UP)[:, :, None]
        mo = rgb @ opp
        lo = torch.bmm(mo, h0, out=ws["lo"])

        # Full resolution: upsample the pre-activation, add grain, squash 1.5 x - 0.5 x^3.
        out, sq = ws["out"], ws["sq"]
        _upsample2x_(lo.view(b * 3, hh + 2, hw + 2), ws["mid"], out.view(b * 3, 2 * hh, 2 * hw))
        out.addcmul_((self.a_noise(s[5]) * noise[5])[:, :, None], ws["grain"])
        out.clamp_(-1.0, 1.0)
        torch.addcmul(ws["three_halves"], out, out, value=-0.5, out=sq)
        out.mul_(sq)
        return out.view(b, 3, 2 * hh, 2 * hw)[:, :, :h, :w]
