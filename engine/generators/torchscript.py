"""TorchScript generators: load a scripted/traced module that follows the protocol, write one.

A TorchScript file runs in torch's own interpreter (no Python is executed from it). To be
accepted it must offer:

* methods ``mapping(z [B, latent_dim]) -> w [B, w_dim]`` and
  ``synthesize(w_plus [B, num_layers, w_dim], noise_strength [num_layers], params [P]) -> [B, 3, H, W]``
  (``params`` may be left out when the module has no generator parameters);
* a buffer or attribute ``w_avg`` ``[w_dim]``;
* its sizes: attributes ``latent_dim``, ``w_dim``, ``num_layers``, ``resolution`` (or
  ``height``/``width``), or an extra file ``lj.json`` in the archive with the same keys (what
  ``lj export`` writes, together with ``param_names``/``param_ranges``, ``layer_groups`` and
  ``has_noise``).

At load time the methods' argument counts are checked, and one frame is generated from ``w_avg``
to check the output's shape; a module that fails either is refused with a one-line message.
"""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import torch

from engine import safeio
from engine.errors import GeneratorError
from engine.generators.base import Generator
from engine.generators.nvlabs_pickle import ModelError

META_FILE = "lj.json"


class TorchScriptGenerator(Generator):
    """A loaded TorchScript module behind the engine's protocol."""

    def __init__(self, module, meta: dict, path: str = ""):
        super().__init__()
        self.module = module
        self.path = path
        self.latent_dim = int(meta["latent_dim"])
        self.w_dim = int(meta["w_dim"])
        self.num_layers = int(meta["num_layers"])
        self.resolution = tuple(int(v) for v in meta["resolution"])
        self.has_noise = bool(meta.get("has_noise", False))
        self.param_names = tuple(meta.get("param_names", ()))
        self.param_ranges = {k: tuple(v) for k, v in (meta.get("param_ranges") or {}).items()}
        self._groups = {k: range(int(a), int(b)) for k, (a, b) in (meta.get("layer_groups") or {}).items()}
        self._takes_params = bool(meta.get("_takes_params", True))

    @property
    def w_avg(self) -> torch.Tensor:
        return self.module.w_avg

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.module.mapping(z)

    def synthesize(self, w_plus, noise_strength=0.0, params=None):
        if not isinstance(noise_strength, torch.Tensor):
            noise = torch.full((self.num_layers,), float(noise_strength), dtype=w_plus.dtype, device=w_plus.device)
        else:
            noise = noise_strength.to(w_plus.dtype)
            noise = noise.expand(self.num_layers) if noise.ndim == 0 else noise
        if not self._takes_params:
            return self.module.synthesize(w_plus, noise)
        if params is None:
            params = torch.tensor([self.param_ranges[n][0] for n in self.param_names],
                                  dtype=w_plus.dtype, device=w_plus.device)
        return self.module.synthesize(w_plus, noise, params)

    def layer_groups(self):
        if {"coarse", "middle", "fine"} <= set(self._groups):
            return dict(self._groups, all=range(0, self.num_layers))
        return super().layer_groups()


def _arg_count(method) -> int | None:
    """Arguments of a TorchScript method, not counting ``self`` (None when unknown)."""
    try:
        return len(method.schema.arguments) - 1
    except (AttributeError, RuntimeError):
        try:
            return len(method.graph.inputs()) - 1 if hasattr(method.graph.inputs(), "__len__") \
                else len(list(method.graph.inputs())) - 1
        except (AttributeError, RuntimeError):
            return None


def load_torchscript(path: str | Path) -> TorchScriptGenerator:
    """Load and check a TorchScript generator (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise ModelError(path, "no such model file")
    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block torch's reader for good
        raise ModelError(path, "is not a regular file (a FIFO, device or socket); not read")
    extra = {META_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception as exc:  # torch raises RuntimeError, ValueError, zipfile errors...
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(path, f"not a TorchScript file ({detail[:160]})") from None
    meta = {}
    if extra.get(META_FILE):
        raw = extra[META_FILE]
        if len(raw) > safeio.LIMITS["json"]:
            raise ModelError(path, f"its {META_FILE} is too large ({len(raw)} bytes)")
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            meta = safeio.json_loads(text, path)
        except safeio.FileRefused as exc:
            raise ModelError(path, f"its {META_FILE}: {exc.reason}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError):
            raise ModelError(path, f"its {META_FILE} is not valid JSON") from None
        if not isinstance(meta, dict):
            raise ModelError(path, f"its {META_FILE} is not a JSON object")
    for key in ("latent_dim", "w_dim", "num_layers"):
        if key not in meta and hasattr(module, key):
            meta[key] = int(getattr(module, key))
    if "resolution" not in meta:
        if hasattr(module, "resolution"):
            meta["resolution"] = list(getattr(module, "resolution"))
        elif hasattr(module, "height") and hasattr(module, "width"):
            meta["resolution"] = [int(module.height), int(module.width)]
    missing = [k for k in ("latent_dim", "w_dim", "num_layers", "resolution") if k not in meta]
    if missing:
        raise ModelError(path, f"the TorchScript module does not say its {', '.join(missing)} "
                               f"(attributes, or an {META_FILE} extra file)")
    for name, want in (("mapping", (1,)), ("synthesize", (2, 3))):
        method = getattr(module, name, None)
        if method is None:
            raise ModelError(path, f"the TorchScript module has no {name}() method "
                                   "(needs mapping(z) and synthesize(w_plus, noise_strength[, params]))")
        n = _arg_count(method)
        if n is not None and n not in want:
            raise ModelError(path, f"wrong signature: {name}() takes {n} arguments, expected "
                                   f"{' or '.join(map(str, want))}")
        if name == "synthesize":
            meta["_takes_params"] = n != 2
    if not isinstance(getattr(module, "w_avg", None), torch.Tensor):
        raise ModelError(path, "the TorchScript module has no w_avg tensor")
    gen = TorchScriptGenerator(module, meta, str(path))
    if tuple(gen.w_avg.shape) != (gen.w_dim,):
        raise ModelError(path, f"w_avg has shape {list(gen.w_avg.shape)}, expected [{gen.w_dim}]")
    try:
        with torch.inference_mode():
            w = gen.mapping(torch.zeros(1, gen.latent_dim))
            img = gen.synthesize(gen.w_avg.float()[None, None].expand(1, gen.num_layers, gen.w_dim).contiguous(), 0.0)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(path, f"wrong signature: a test frame failed ({detail[:160]})") from None
    h, wd = gen.resolution
    if tuple(w.shape) != (1, gen.w_dim):
        raise ModelError(path, f"mapping() returned {list(w.shape)}, expected [1, {gen.w_dim}]")
    if tuple(img.shape) != (1, 3, h, wd):
        raise ModelError(path, f"synthesize() returned {list(img.shape)}, expected [1, 3, {h}, {wd}]")
    return gen


class _Export(torch.nn.Module):
    """What gets traced: the generator's two stages as methods, ``w_avg`` as a buffer."""

    def __init__(self, gen: Generator, vector_noise: bool = True):
        super().__init__()
        self.gen = gen
        self.vector_noise = vector_noise  # False: the generator takes one noise value (its mean)
        self.register_buffer("w_avg", gen.w_avg.detach().clone())

    def mapping(self, z):
        return self.gen.mapping(z)

    def synthesize(self, w_plus, noise_strength, params):
        if not self.vector_noise:
            noise_strength = noise_strength.mean()
        p = params if len(getattr(self.gen, "param_names", ())) else None
        return self.gen.synthesize(w_plus, noise_strength, p) if p is not None \
            else self.gen.synthesize(w_plus, noise_strength)

    def forward(self, w_plus, noise_strength, params):
        return self.synthesize(w_plus, noise_strength, params)


def write_torchscript(gen: Generator, out: str | Path) -> Path:
    """Trace ``gen`` (batch 1, float32, CPU) and save it with its ``lj.json``."""
    out = Path(out)
    gen = gen.eval().cpu().float()
    names = tuple(getattr(gen, "param_names", ()))
    ranges = dict(getattr(gen, "param_ranges", {}) or {})
    z = torch.randn(1, gen.latent_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        w = gen.mapping(z)
    w_plus = w[:, None].expand(1, gen.num_layers, gen.w_dim).contiguous()
    noise = torch.zeros(gen.num_layers)
    params = torch.tensor([ranges[n][0] for n in names], dtype=torch.float32)
    traced = None
    for vector_noise in (True, False):  # per-layer noise first; a generator that takes only one
        wrapper = _Export(gen, vector_noise).eval()  # value gets the mean of the layers'
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace_module(
                    wrapper, {"mapping": (z,), "synthesize": (w_plus, noise, params)}, check_trace=False)
            break
        except Exception as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if traced is None:
        raise GeneratorError(f"cannot export this generator as TorchScript ({detail[:160]})")
    groups = {k: [r.start, r.stop] for k, r in gen.layer_groups().items() if k != "all"}
    meta = {"latent_dim": gen.latent_dim, "w_dim": gen.w_dim, "num_layers": gen.num_layers,
            "resolution": list(gen.resolution), "has_noise": bool(getattr(gen, "has_noise", False)),
            "param_names": list(names), "param_ranges": {k: list(v) for k, v in ranges.items()},
            "layer_groups": groups}
    try:
        torch.jit.save(traced, str(out), _extra_files={META_FILE: json.dumps(meta)})
    except OSError as exc:
        raise GeneratorError(f"{out}: cannot write: {exc.strerror or exc}") from None
    return out
