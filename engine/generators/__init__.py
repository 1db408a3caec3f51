"""Generators: the built-in ones, artists' own models, and :func:`load_generator`, the one way in.

A generator spec (``--generator``, a mapping's ``generator =``, ``/lj/generator``) is one of:

=================================  ==========================================================
``builtin:cppn``                   the built-in generator (the default)
``model.pkl``                      an NVlabs StyleGAN2 / StyleGAN2-ADA / StyleGAN3 pickle,
                                   read without executing anything in it
``model.safetensors``              our export: weights + ``model.json`` beside it
``model.ts`` / ``model.pt``        a TorchScript module that follows the protocol
``blend:A|B``                      two models of one architecture, crossfaded by the generator
                                   parameter ``blend`` (see :mod:`engine.generators.blend`)
=================================  ==========================================================

A model spec may end in ``#class=N`` to pick the class of a conditional model (default 0).
See docs/generators.md.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import GeneratorError

PICKLE_SUFFIXES = (".pkl", ".pickle")
TORCHSCRIPT_SUFFIXES = (".ts", ".pt", ".torchscript", ".jit")
EXPORT_SUFFIXES = (".safetensors",)
#: The generators that need no file (``cppn`` and ``flow`` alone are accepted too).
BUILTINS = ("builtin:cppn", "builtin:flow")
KNOWN = "builtin:cppn, builtin:flow, a model file (.pkl, .safetensors, .ts/.pt) or blend:A|B"


def split_options(spec: str) -> tuple[str, dict[str, str]]:
    """``"model.pkl#class=3"`` -> ``("model.pkl", {"class": "3"})``."""
    path, sep, opts = spec.partition("#")
    out = {}
    if sep:
        for item in opts.split("&"):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise GeneratorError(f"generator option '{item}' in '{spec}' should be name=value (e.g. #class=3)")
            out[key.strip()] = value.strip()
    return path.strip(), out


def _class_index(opts: dict, spec: str) -> int | None:
    unknown = set(opts) - {"class"}
    if unknown:
        raise GeneratorError(f"unknown generator option '{sorted(unknown)[0]}' in '{spec}' (known: class)")
    if "class" not in opts:
        return None
    try:
        return int(opts["class"])
    except ValueError:
        raise GeneratorError(f"#class needs a whole number in '{spec}', not '{opts['class']}'") from None


def load_model(spec: str, memory_limit: int | None = None):
    """An artist's model (pickle, safetensors export, TorchScript) behind the protocol."""
    from engine.generators.stylegan import StyleGANGenerator

    path_text, opts = split_options(spec)
    class_index = _class_index(opts, spec)
    path = Path(path_text).expanduser()
    suffix = path.suffix.lower()
    if not path.exists() and suffix != ".json":
        raise GeneratorError(f"{path}: no such model file")
    if suffix in PICKLE_SUFFIXES:
        from engine.generators.nvlabs_pickle import load_nvlabs_pickle

        loaded = load_nvlabs_pickle(path, memory_limit)
        net, kwargs = loaded.network, _init_kwargs(loaded)
    elif suffix in EXPORT_SUFFIXES or suffix == ".json":
        from engine.generators.export import load_safetensors

        net, meta = load_safetensors(path, memory_limit)
        kwargs = meta["init_kwargs"]
        if class_index is None:
            class_index = meta.get("class_index")
    elif suffix in TORCHSCRIPT_SUFFIXES:
        from engine.generators.torchscript import load_torchscript

        return load_torchscript(path)
    else:
        raise GeneratorError(f"{path}: unknown model format '{suffix or 'no suffix'}' (known: {KNOWN})")
    try:
        gen = StyleGANGenerator(net, class_index=class_index, name=str(path))
    except ValueError as exc:
        raise GeneratorError(f"{path}: {exc}") from None
    gen.init_kwargs = kwargs
    return gen


def _init_kwargs(loaded) -> dict:
    from engine.generators.nvlabs_pickle import generator_record

    rec = generator_record(loaded.records, loaded.path)
    kwargs = rec.init_kwargs
    if rec.init_args:  # positional arguments: name them after the Generator signature
        names = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
        kwargs = dict(zip(names, rec.init_args), **kwargs)
    return kwargs


def load_generator(spec: str | None, resolution: tuple[int, int] = (512, 512), *,
                   memory_limit: int | None = None):
    """Build the generator ``spec`` names (see the module docstring). Errors are
    :class:`~engine.errors.GeneratorError` with one line naming the file and the problem.

    ``resolution`` applies to the built-in generators; models have their own.
    """
    name = (spec or "builtin:cppn").strip()
    if name.startswith("blend:"):
        from engine.generators.blend import load_blend

        return load_blend(name, memory_limit=memory_limit)
    if name.startswith("builtin") or name in ("cppn", "flow"):
        return _builtin(name, resolution)
    path_part = Path(split_options(name)[0]).expanduser()
    if not path_part.suffix and not path_part.exists():
        raise GeneratorError(f"unknown generator '{name}' (known: {KNOWN}; see docs/generators.md)")
    return load_model(name, memory_limit)


def _builtin(name: str, resolution: tuple[int, int]):
    """A built-in generator by name; a wrong name or a ``#option`` (built-ins have no classes)
    is a one-line error that lists the built-ins."""
    from engine.generators.runner import load_generator as load_builtin

    base, opts = split_options(name)
    if f"builtin:{base}" in BUILTINS:
        base = f"builtin:{base}"
    if base == "builtin":
        base = BUILTINS[0]
    if base not in BUILTINS:
        raise GeneratorError(f"unknown built-in generator '{base}' (built-ins: {', '.join(BUILTINS)})")
    if opts:
        raise GeneratorError(f"'{name}': {base} takes no #options (#class=N is for conditional "
                             "models, not the built-ins)")
    return load_builtin(base, resolution)
