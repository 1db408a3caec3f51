"""Blend two models of one architecture live (two fine-tunes of one base model, say).

Spec syntax (``--generator``, a mapping's ``generator =``, ``/lj/generator``)::

    blend:A.pkl|B.pkl              weights interpolated: A at blend = 0, B at blend = 1
    blend:A.pkl|B.pkl@fine         layer swap: the fine layers (64 px and up) come from B by
                                   the amount ``blend``; everything else stays A
    blend:A.pkl|B.pkl@middle       ... the middle layers (16-32 px)
    blend:A.pkl|B.pkl@16           ... every synthesis block from 16 px up (a crossover)
    blend:A.pkl|B.pkl@coarse       ... the coarse layers (4-8 px) from B

``A`` and ``B`` are any model specs (pickle, safetensors export; ``#class=N`` allowed on ``A``),
StyleGAN2 or StyleGAN3 (both of the same one). The amount is the generator parameter ``blend``
(0..1, default 0), a mapping target ``generator.blend``, so a mapping source crossfades the two
models (``to = "generator.blend"``). A StyleGAN3 blend also has A's parameters ``translate_x``,
``translate_y`` and ``rotate`` (after ``blend`` in ``param_names``). A layer swap of StyleGAN3
models goes by each layer's size in its name (``L<i>_<size>_<channels>``).

Each frame the blended tensors are recomputed in place, ``lerp(a, b, blend * mask)``, from
device-resident copies of both models (CUDA-graph safe: the amount is a tensor, never a Python
number). In a layer swap only the swapped blocks' tensors are touched; the mapping network, and so
the w space, stays A's.
"""

from __future__ import annotations

import re

import torch

from engine.errors import GeneratorError
from engine.generators.base import Generator
from engine.generators.stylegan import COARSE_MAX, MIDDLE_MAX, StyleGANGenerator

GROUP_RANGES = {"coarse": (0, COARSE_MAX), "middle": (COARSE_MAX + 1, MIDDLE_MAX),
                "fine": (MIDDLE_MAX + 1, 1 << 30)}


def parse_blend(spec: str) -> tuple[str, str, str | None]:
    """``"blend:A|B@fine"`` -> ``("A", "B", "fine")``."""
    body = spec[len("blend:"):] if spec.startswith("blend:") else spec
    body, at, where = body.rpartition("@") if "@" in body else (body, "", "")
    parts = body.split("|")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise GeneratorError(f"'{spec}': a blend needs two models, blend:A.pkl|B.pkl[@fine|@middle|@coarse|@RES]")
    where = where.strip() or None
    if where is not None and where not in GROUP_RANGES and not where.isdigit():
        raise GeneratorError(f"'{spec}': unknown layer range '@{where}' (coarse, middle, fine, or a "
                             "resolution such as 16)")
    return parts[0].strip(), parts[1].strip(), where


def _block_resolution(key: str, layer_res: dict | None = None) -> int | None:
    m = re.match(r"synthesis\.b(\d+)\.", key)
    if m:
        return int(m.group(1))
    if key.startswith("synthesis.input.") and layer_res:  # StyleGAN3's Fourier input: coarsest
        return min(layer_res.values())
    m = re.match(r"synthesis\.(L(\d+)_(\d+)_\d+)\.", key)  # StyleGAN3: L<index>_<size>_<channels>
    if not m:
        return None
    if layer_res and m.group(1) in layer_res:  # the layer's resolution as its layer group counts it
        return layer_res[m.group(1)]
    return int(m.group(3))


def stylegan3_layer_resolutions(net) -> dict[str, int]:
    """``{layer name: half its output sampling rate}`` for a StyleGAN3 network (``{}`` otherwise):
    the resolution :meth:`StyleGANGenerator.layer_resolutions` gives the layer's style row."""
    syn = getattr(net, "synthesis", None)
    if syn is None or not hasattr(syn, "input"):
        return {}
    return {n: int(float(getattr(syn, n).out_sampling_rate) / 2) for n in syn.layer_names}


def blend_mask(key: str, where: str | None, layer_res: dict | None = None) -> bool:
    """Does tensor ``key`` take part in the blend?"""
    if where is None:
        return True
    res = _block_resolution(key, layer_res)
    if res is None:
        return False
    if where.isdigit():
        return res >= int(where)
    lo, hi = GROUP_RANGES[where]
    return lo <= res <= hi


class BlendGenerator(Generator):
    """Two :class:`StyleGANGenerator` of one architecture, blended by the parameter ``blend``."""

    param_names = ("blend",)
    param_ranges = {"blend": (0.0, 0.0, 1.0)}

    def __init__(self, a: StyleGANGenerator, b: StyleGANGenerator, where: str | None = None,
                 name: str = ""):
        super().__init__()
        sa, sb = a.net.state_dict(), b.net.state_dict()
        if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
            raise GeneratorError(f"{name or 'blend'}: the two models have different architectures "
                                 "(a blend needs two models of the same shape, e.g. two fine-tunes "
                                 "of one base model)")
        self.live = a
        self.name = name
        self.where = where
        self.latent_dim, self.w_dim = a.latent_dim, a.w_dim
        self.num_layers, self.resolution = a.num_layers, a.resolution
        self.has_noise = a.has_noise
        # the live model's own parameters (StyleGAN3: translate_x, translate_y, rotate) follow blend
        self.param_names = ("blend",) + tuple(a.param_names)
        self.param_ranges = {"blend": (0.0, 0.0, 1.0), **dict(a.param_ranges)}
        self.init_kwargs = getattr(a, "init_kwargs", None)
        layer_res = stylegan3_layer_resolutions(a.net)
        self._keys = [k for k in sa if sa[k].is_floating_point() and blend_mask(k, where, layer_res)
                      and not torch.equal(sa[k], sb[k])]
        if not self._keys:
            raise GeneratorError(f"{name or 'blend'}: the two models are identical in the blended layers")
        for i, k in enumerate(self._keys):
            self.register_buffer(f"_a{i}", sa[k].detach().clone())
            self.register_buffer(f"_b{i}", sb[k].detach().clone())
        self.register_buffer("_default", self.default_params(), persistent=False)
        self._pairs = None  # (a, b, destination) per blended tensor, rebuilt after .to()

    @property
    def w_avg(self) -> torch.Tensor:
        return self.live.w_avg

    def _apply(self, fn, *args, **kwargs):
        self._pairs = None  # .to() replaces buffers: look the tensors up again
        return super()._apply(fn, *args, **kwargs)

    def _targets(self):
        if self._pairs is None:
            live = dict(self.live.net.named_parameters())
            live.update(dict(self.live.net.named_buffers()))
            self._pairs = [(getattr(self, f"_a{i}"), getattr(self, f"_b{i}"), live[k].data)
                           for i, k in enumerate(self._keys)]
        return self._pairs

    def apply_blend(self, amount: torch.Tensor) -> None:
        """Write ``lerp(a, b, amount)`` into the live model's blended tensors (in place)."""
        t = amount.reshape(()).clamp(0, 1)
        for a, b, dst in self._targets():
            torch.lerp(a, b, t.to(a.dtype), out=dst)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.live.mapping(z)

    def synthesize(self, w_plus, noise_strength=0.0, params=None):
        params = self._default if params is None else params
        with torch.no_grad():
            self.apply_blend(params[0:1])
        if len(self.param_names) > 1:
            return self.live.synthesize(w_plus, noise_strength, params[1:])
        return self.live.synthesize(w_plus, noise_strength)

    def layer_groups(self):
        return self.live.layer_groups()


def load_blend(spec: str, memory_limit: int | None = None) -> BlendGenerator:
    from engine.generators import load_model

    a_spec, b_spec, where = parse_blend(spec)
    a, b = load_model(a_spec, memory_limit), load_model(b_spec, memory_limit)
    if not isinstance(a, StyleGANGenerator) or not isinstance(b, StyleGANGenerator):
        raise GeneratorError(f"'{spec}': only StyleGAN models (pickles, safetensors exports) can be blended")
    return BlendGenerator(a, b, where, name=spec)
