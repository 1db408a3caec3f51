"""Our own model format (safetensors + a JSON sidecar) and ``lj export``.

``model.safetensors`` holds the network's ``state_dict()`` (tensors only: the format has no way to
carry code); ``model.json`` beside it says what to build::

    {"latent_jockey_model": 1, "family": "stylegan2", "init_kwargs": {...}, "class_index": null}

``init_kwargs`` are NVlabs' ``Generator`` keyword arguments (a rectangular StyleGAN2 from ``lj
train --size`` adds our one extension, ``synthesis_kwargs.init_res = [h0, w0]``). Loading builds our network from them
(after checking its size on the meta device), then loads the tensors with ``strict=True``.

``lj export MODEL -o out.safetensors`` writes this form from an NVlabs pickle (or another export);
``lj export MODEL -o out.ts`` writes TorchScript (see :mod:`engine.generators.torchscript`).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.errors import GeneratorError
from engine.generators.nvlabs_pickle import ModelError, _gb, _meta_size, load_state, available_memory, network_class

FORMAT_VERSION = 1


def sidecar(path: str | Path) -> Path:
    """The JSON file that goes with ``path`` (``x.safetensors`` -> ``x.json``)."""
    return Path(path).with_suffix(".json")


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    raise GeneratorError(f"cannot store the architecture argument {value!r} as JSON")


def write_safetensors(gen, out: str | Path) -> tuple[Path, Path]:
    """Write a :class:`~engine.generators.stylegan.StyleGANGenerator` as ``out`` + its JSON."""
    from safetensors.torch import save_file

    from engine.generators.stylegan import StyleGANGenerator

    if not isinstance(gen, StyleGANGenerator) or not hasattr(gen, "init_kwargs"):
        raise GeneratorError("only StyleGAN models can be exported as safetensors (built-in "
                             "generators have no weights to export; use .ts for TorchScript)")
    out = Path(out)
    state = {k: v.detach().to("cpu").contiguous() for k, v in gen.net.state_dict().items()}
    meta = {"latent_jockey_model": FORMAT_VERSION, "family": gen.family,
            "init_kwargs": _json_safe(gen.init_kwargs), "class_index": gen.class_index}
    try:
        save_file(state, str(out))
        sidecar(out).write_text(json.dumps(meta, indent=1) + "\n")
    except OSError as exc:
        raise GeneratorError(f"{out}: cannot write: {exc.strerror or exc}") from None
    return out, sidecar(out)


def read_sidecar(path: Path) -> dict:
    js = sidecar(path)
    try:
        meta = json.loads(js.read_text())
    except FileNotFoundError:
        raise ModelError(path, f"the architecture file {js.name} is missing beside it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(js, f"not a readable JSON architecture file ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict) or meta.get("latent_jockey_model") != FORMAT_VERSION:
        raise ModelError(js, "not a Latent Jockey model description (latent_jockey_model: 1 missing)")
    if meta.get("family") not in ("stylegan2", "stylegan3") or not isinstance(meta.get("init_kwargs"), dict):
        raise ModelError(js, "the model description needs a family (stylegan2 or stylegan3) and init_kwargs")
    return meta


def load_safetensors(path: str | Path, memory_limit: int | None = None):
    """Build the network described by ``path``'s JSON and load ``path``'s tensors strictly.

    Returns ``(network, meta)``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise ModelError(path, "no such model file")
    meta = read_sidecar(path)
    cls = network_class(meta["family"], path)
    kwargs = meta["init_kwargs"]
    limit = available_memory() if memory_limit is None else int(memory_limit)
    try:
        need = _meta_size(cls, (), kwargs)
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError, ZeroDivisionError) as exc:
        raise ModelError(sidecar(path), f"the architecture arguments are not understood "
                                        f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if need > limit:
        raise ModelError(path, f"the generator needs {_gb(need)} of memory, more than the {_gb(limit)} available")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(path, f"not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    net = cls(**kwargs)
    missing, unexpected = load_state(net, state)
    if missing or unexpected:
        raise ModelError(path, "the weights do not match the architecture in "
                               f"{sidecar(path).name}: " + ", ".join((missing + unexpected)[:4]))
    return net.eval().requires_grad_(False), meta


def export(spec: str, out: str | Path, resolution: tuple[int, int] = (512, 512)) -> list[Path]:
    """``lj export``: load ``spec`` like ``--generator`` does, write ``out`` (.ts/.pt or
    .safetensors). Returns the files written."""
    from engine.generators import load_generator

    out = Path(out)
    gen = load_generator(spec, resolution)
    if out.suffix in (".ts", ".pt", ".torchscript"):
        from engine.generators.torchscript import write_torchscript

        return [write_torchscript(gen, out)]
    if out.suffix == ".safetensors":
        return list(write_safetensors(gen, out))
    raise GeneratorError(f"{out}: unknown export format (use .ts for TorchScript or .safetensors "
                         "for weights + JSON)")

