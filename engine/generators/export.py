"""Our own model format (safetensors + a JSON sidecar) and ``lj export``.

``model.safetensors`` holds the network's ``state_dict()`` (tensors only: the format has no way to
carry code); ``model.json`` beside it says what to build::

    {"latent_jockey_model": 1, "family": "stylegan2", "init_kwargs": {...}, "class_index": null}

``init_kwargs`` are NVlabs' ``Generator`` keyword arguments (a rectangular StyleGAN2 from ``lj
train --size`` adds our one extension, ``synthesis_kwargs.init_res = [h0, w0]``). Loading builds our network from them
(after checking its size on the meta device), then loads the tensors with ``strict=True``.

``lj export MODEL -o out.safetensors`` writes this form from an NVlabs pickle (or another export);
``lj export MODEL -o out.ts`` writes TorchScript (see :mod:`engine.generators.torchscript`).

Reading is bounded before any parser runs: the JSON sidecar is a regular file of at most
``safeio.LIMITS["json"]`` bytes nested at most :data:`engine.safeio.MAX_DEPTH` deep, and the
safetensors file's own JSON header (its first 8 bytes give its length) at most
:data:`MAX_HEADER` bytes and as deep, checked by :func:`check_header` before the library reads it.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from engine import safeio
from engine.errors import GeneratorError
from engine.generators.nvlabs_pickle import ModelError, _gb, _meta_size, load_state, available_memory, network_class

FORMAT_VERSION = 1
#: Largest safetensors JSON header we let the library parse (a StyleGAN3's is ~100 KB; the
#: library's own limit is 100 MB).
MAX_HEADER = 16 << 20


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
    """The JSON architecture file beside ``path``, read with bounds and checked."""
    js = sidecar(path)
    try:
        meta = safeio.json_loads(safeio.read_text(js, safeio.LIMITS["json"], "architecture file"),
                                 js)
    except FileNotFoundError:
        raise ModelError(path, f"the architecture file {js.name} is missing beside it") from None
    except safeio.FileRefused as exc:
        raise ModelError(js, exc.reason) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(js, f"not a readable JSON architecture file ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict) or meta.get("latent_jockey_model") != FORMAT_VERSION:
        raise ModelError(js, "not a Latent Jockey model description (latent_jockey_model: 1 missing)")
    if meta.get("family") not in ("stylegan2", "stylegan3") or not isinstance(meta.get("init_kwargs"), dict):
        raise ModelError(js, "the model description needs a family (stylegan2 or stylegan3) and init_kwargs")
    return meta


def check_header(path: Path) -> None:
    """Refuse a safetensors file whose JSON header is too long or too deep, or that is not a
    regular file (a FIFO would block the library), before the library reads it.

    Reads 8 bytes and the header only; the tensors are left to the library."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ModelError(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ModelError(path, "is not a regular file (a FIFO, device or socket); not read")
        head = os.read(fd, 8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n <= MAX_HEADER:
            raise ModelError(path, f"not a readable safetensors file (header length {n}; at "
                                   f"most {MAX_HEADER} bytes)")
        text = os.read(fd, n)
        if len(text) != n:
            raise ModelError(path, "not a readable safetensors file (header cut short)")
        safeio.json_loads(text.decode("utf-8", "replace"), path)
    except safeio.FileRefused as exc:
        raise ModelError(path, f"not a readable safetensors file ({exc.reason})") from None
    except ValueError as exc:  # JSONDecodeError
        raise ModelError(path, f"not a readable safetensors file (header: {exc})") from None
    except OSError as exc:
        raise ModelError(path, f"cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


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
    check_header(path)  # before anything is built: not a FIFO, a bounded header
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

