"""The engine's :class:`~engine.generators.base.Generator` protocol around an NVlabs-shaped network.

Works for our StyleGAN2 (:mod:`engine.generators.stylegan2`) and StyleGAN3
(:mod:`engine.generators.stylegan3`) modules alike: anything with NVlabs' ``z_dim, c_dim, w_dim,
num_ws, img_resolution``, a ``mapping(z, c)`` that returns ``[B, num_ws, w_dim]`` with a
``w_avg`` buffer, and a ``synthesis(ws, noise_mode=..., force_fp32=...)``.

* ``mapping(z)`` uses the class label chosen at load time (``#class=N`` in the spec, ``--class``
  on the command line; class 0 when a conditional model is given none).
* ``synthesize(w_plus, noise_strength, params)``: per-layer noise. A StyleGAN2 layer adds its fixed
  noise image (``noise_const``, so frames stay deterministic and renders repeatable) scaled by its
  learned strength times ``noise_strength[layer]``: 0 = no noise, 1 = the model's own trained
  amount (NVlabs' ``noise_mode='const'``), above 1 exaggerates it. StyleGAN3 has no noise inputs
  (``has_noise = False``): the noise strength is accepted and ignored, so one mapping file plays
  on every generator.
* StyleGAN3 only: the generator parameters ``translate_x``, ``translate_y`` (image widths, + =
  right / down) and ``rotate`` (degrees, + = counter-clockwise), the input transform of NVlabs'
  visualizer (:data:`engine.generators.stylegan3.TRANSFORM_PARAMS`). Each frame they are written
  into ``synthesis.input.transform`` with tensor ops from the runner's static ``params`` tensor
  (CUDA-graph safe); ``params=None`` means no transform.
* ``layer_groups()`` by resolution: coarse 4-8 px, middle 16-32 px, fine 64 px and up (a
  StyleGAN3 layer counts at half its sampling rate, see :meth:`StyleGANGenerator.layer_resolutions`).
"""

from __future__ import annotations

import torch

from engine.generators.base import Generator

COARSE_MAX = 8    # layers at resolutions up to this are "coarse"
MIDDLE_MAX = 32   # ... up to this "middle", above it "fine"


class StyleGANGenerator(Generator):
    """Wrap ``network`` (an NVlabs-shaped generator) for the engine.

    Parameters
    ----------
    network:
        Our StyleGAN2 or StyleGAN3 ``Generator`` module with its weights loaded.
    class_index:
        The class label for a conditional model (``c_dim > 0``); ignored otherwise.
    name:
        Where it came from (for messages and the overlay).
    """

    param_names: tuple = ()
    param_ranges: dict = {}

    def __init__(self, network: torch.nn.Module, class_index: int | None = None, name: str = ""):
        super().__init__()
        self.net = network.eval().requires_grad_(False)
        self.name = name
        # False: on CUDA the blocks the model was trained in float16 (num_fp16_res) run in
        # float16, as in NVlabs' own tools; True: everything in the module's dtype.
        self.force_fp32 = False
        self.latent_dim = int(network.z_dim)
        self.w_dim = int(network.w_dim)
        self.num_layers = int(network.num_ws)
        res = int(network.img_resolution)
        # (h, w): a rectangular StyleGAN2 (init_res) says its own shape; NVlabs' are square
        self.resolution = tuple(int(v) for v in getattr(network, "img_shape", (res, res)))
        self.c_dim = int(getattr(network, "c_dim", 0) or 0)
        self.family = "stylegan3" if hasattr(network.synthesis, "input") else "stylegan2"
        self.has_noise = self.family == "stylegan2" and any(
            getattr(m, "use_noise", False) for m in network.synthesis.modules())
        if self.c_dim and class_index is not None and not 0 <= int(class_index) < self.c_dim:
            raise ValueError(f"class {class_index} is out of range: the model has classes 0..{self.c_dim - 1}")
        self.class_index = int(class_index) if (self.c_dim and class_index is not None) else (0 if self.c_dim else None)
        c = torch.zeros(1, max(self.c_dim, 1))
        if self.c_dim:
            c[0, self.class_index] = 1.0
        self.register_buffer("c", c, persistent=False)
        if self.family == "stylegan3":
            from engine.generators.stylegan3 import TRANSFORM_PARAMS

            self.param_names = tuple(TRANSFORM_PARAMS)
            self.param_ranges = dict(TRANSFORM_PARAMS)
            self.register_buffer("_default_params", self.default_params(), persistent=False)

    @property
    def w_avg(self) -> torch.Tensor:
        return self.net.mapping.w_avg

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        c = self.c.to(z.device).expand(z.shape[0], -1) if self.c_dim else None
        ws = self.net.mapping(z.float(), c)
        return (ws[:, 0] if ws.ndim == 3 else ws).to(self.w_avg.dtype)

    def noise_vector(self, noise_strength, like: torch.Tensor) -> torch.Tensor:
        """``noise_strength`` (float, 0-d or ``[num_layers]``) as a ``[num_layers]`` tensor."""
        if not isinstance(noise_strength, torch.Tensor):
            return torch.full((self.num_layers,), float(noise_strength), dtype=like.dtype, device=like.device)
        n = noise_strength.to(like.dtype)
        return n.expand(self.num_layers) if n.ndim == 0 else n

    def synthesize(self, w_plus: torch.Tensor, noise_strength=0.0, params=None) -> torch.Tensor:
        kw = {"noise_mode": "const", "force_fp32": self.force_fp32}
        if self.family == "stylegan2":
            kw["noise_gain"] = self.noise_vector(noise_strength, w_plus)
        else:
            self.set_transform(self._default_params if params is None else params)
        img = self.net.synthesis(w_plus, **kw)
        return img.clamp(-1.0, 1.0)

    @torch.no_grad()
    def set_transform(self, params: torch.Tensor) -> None:
        """StyleGAN3: write ``params`` (``[translate_x, translate_y, rotate]``, a tensor) into the
        input transform in place, with tensor ops only (no host sync, graph-capturable)."""
        from engine.generators.stylegan3 import input_transform

        buf = self.net.synthesis.input.transform
        p = params.to(torch.float32)
        buf.copy_(input_transform(p[0], p[1], p[2]))

    def layer_resolutions(self) -> list[int]:
        """The resolution each style row drives (StyleGAN2: the block's; StyleGAN3: the layer's
        sampling rate, halved, when the network reports it)."""
        syn = self.net.synthesis
        if hasattr(syn, "layer_resolutions"):
            return list(syn.layer_resolutions())
        names = getattr(syn, "layer_names", None)
        if names:  # StyleGAN3: ws[0] feeds the input, ws[i + 1] layer i
            rates = [float(getattr(getattr(syn, n), "out_sampling_rate", 0) or 0) / 2 for n in names]
            rates = [rates[0]] + rates
            rates += [rates[-1]] * (self.num_layers - len(rates))
            return [int(r) for r in rates[: self.num_layers]]
        return []

    def layer_groups(self) -> dict[str, range]:
        res = self.layer_resolutions()
        if len(res) != self.num_layers or not all(res):
            return super().layer_groups()
        n = self.num_layers
        coarse = [i for i, r in enumerate(res) if r <= COARSE_MAX]
        middle = [i for i, r in enumerate(res) if COARSE_MAX < r <= MIDDLE_MAX]
        fine = [i for i, r in enumerate(res) if r > MIDDLE_MAX]

        def span(idx, fallback):
            return range(idx[0], idx[-1] + 1) if idx else fallback

        # A small model may have no fine (or middle) layers: the group falls back to the
        # highest layers it has, so mappings written for big models still mean something.
        coarse_r = span(coarse, range(0, 1))
        middle_r = span(middle, range(max(0, n - 2), n))
        fine_r = span(fine, range(n - 1, n))
        return {"coarse": coarse_r, "middle": middle_r, "fine": fine_r, "all": range(0, n)}
