"""Preset and latent files: save the state of a show, read it back safely.

A preset is a TOML file ``<dir>/<name>.toml`` with the current keyframes beside it in
``<name>.npy`` (read back with ``allow_pickle=False``)::

    [preset]
    name = "night"
    mapping = "/shows/club.toml"   # the mapping file (absolute)
    scene = "drop"                 # the scene, for a scene file
    keyframes = "night.npy"        # beside this file: the active scene's keyframes
    crossfade = 2.0                # seconds, when recalled

    [params]                       # parameter values (OSC /lj/param/<name>)
    intensity = 0.8

    [shaders]
    chain = ["feedback", "grade"]
    inputs = { "feedback.amount" = 0.7 }   # every shader input's value when saved

A latent is ``<dir>/<name>.npy``: one ``w_plus`` ``[num_layers, w_dim]``; mapping files load it
as a keyframe by name (``keyframes = { latents = ["name"] }``). Names are letters, digits, ``_``
and ``-`` only, so a name can never reach outside its folder. Nothing read is executed. A save
never replaces an existing preset or latent unless the operator started ``lj run`` with
``--presets-overwrite``; files appear whole or not at all (:mod:`engine.safeio`).

Reading is bounded (see :mod:`engine.safeio`): a preset's TOML is at most
``safeio.LIMITS["preset"]`` bytes and :data:`engine.safeio.MAX_DEPTH` levels deep, a ``.npy``
array at most :data:`MAX_ARRAY_BYTES`; only regular files are read (a FIFO never blocks).
"""

from __future__ import annotations

import io
import math
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import safeio
from engine.errors import MappingError
from engine.safeio import FileRefused, child_path, write_atomic, write_new

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")
#: Largest ``.npy`` file read as keyframes or a latent (a w_plus is ~36 KB).
MAX_ARRAY_BYTES = 16 << 20
_PRESET_KEYS = {"preset": ("name", "mapping", "scene", "keyframes", "crossfade"),
                "params": None, "shaders": ("chain", "inputs")}


class PresetError(MappingError):
    """A preset or latent that cannot be saved or read (one line, with the file)."""

    def _format(self) -> str:
        return self.message if self.path is None else super()._format()


@dataclass
class Preset:
    name: str
    mapping: str
    scene: str | None = None
    keyframes: np.ndarray | None = None
    crossfade: float = 2.0
    params: dict[str, float] = field(default_factory=dict)
    chain: list[str] = field(default_factory=list)
    inputs: dict[str, float] = field(default_factory=dict)


def check_name(name: object, what: str = "preset") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PresetError(f"{what} name {name!r} must be 1-64 letters, digits, _ and - "
                          "(not starting with -)")
    return name


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _toml_num(x: float) -> str:
    x = float(x)
    return repr(x) if math.isfinite(x) else "0.0"


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(a, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _refuse_existing(paths, what: str, name: str) -> None:
    for p in paths:
        if p.exists() or p.is_symlink():
            raise PresetError(f"{what} {name!r} exists already ({p}); not replaced (start lj run "
                              "with --presets-overwrite to replace saved presets and latents)")


def save_preset(folder: str | Path, preset: Preset, overwrite: bool = False) -> Path:
    """Write ``<folder>/<name>.toml`` (and ``.npy``); returns the TOML path.

    Never replaces an existing preset unless ``overwrite`` (the operator's
    ``--presets-overwrite``): a preset of that name is refused with PresetError and nothing is
    written. Both files appear whole or not at all (:mod:`engine.safeio`).
    """
    name = check_name(preset.name)
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = child_path(folder, name, ".toml", "preset name")
        npy = child_path(folder, name + ".npy", what="preset name")
        lines = [f"# Latent Jockey preset, saved {time.strftime('%Y-%m-%d %H:%M:%S')}",
                 "[preset]", f"name = {_toml_str(name)}",
                 f"mapping = {_toml_str(str(Path(preset.mapping).resolve()))}"]
        if preset.scene:
            lines.append(f"scene = {_toml_str(preset.scene)}")
        if preset.keyframes is not None:
            lines.append(f"keyframes = {_toml_str(name + '.npy')}")
        lines.append(f"crossfade = {_toml_num(preset.crossfade)}")
        lines += ["", "[params]"]
        lines += [f"{k} = {_toml_num(v)}" for k, v in preset.params.items()
                  if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
        lines += ["", "[shaders]",
                  "chain = [" + ", ".join(_toml_str(c) for c in preset.chain) + "]",
                  "inputs = { " + ", ".join(f"{_toml_str(k)} = {_toml_num(v)}"
                                            for k, v in preset.inputs.items()) + " }", ""]
        text = "\n".join(lines).encode("utf-8")
        arrays = _npy_bytes(preset.keyframes) if preset.keyframes is not None else None
        if overwrite:
            if arrays is not None:
                write_atomic(npy, arrays)
            write_atomic(path, text)
            return path
        _refuse_existing((path, npy) if arrays is not None else (path,), "preset", name)
        if arrays is not None:
            write_new(npy, arrays)
        try:
            write_new(path, text)
        except BaseException:
            if arrays is not None:
                npy.unlink(missing_ok=True)   # ours: written just above
            raise
    except FileExistsError:
        raise PresetError(f"preset {name!r} exists already in {folder}; not replaced (start "
                          "lj run with --presets-overwrite to replace saved presets)") from None
    except FileRefused as e:
        raise PresetError(f"cannot save preset {name!r}: {e}") from None
    except OSError as e:
        raise PresetError(f"cannot save preset {name!r} in {folder}: {e.strerror or e}") from None
    return path


def load_preset(folder: str | Path, name: str) -> Preset:
    """Read ``<folder>/<name>.toml`` (and its keyframes); PresetError with file:line if bad."""
    name = check_name(name)
    path = Path(folder) / f"{name}.toml"
    try:
        text = safeio.read_text(path, safeio.LIMITS["preset"], "preset")
        data = safeio.toml_loads(text, path)
    except FileNotFoundError:
        raise PresetError(f"no preset {name!r}", path) from None
    except safeio.FileRefused as e:  # too large, too deep, not a regular file, not UTF-8
        raise PresetError(e.reason, path) from None
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"TOML syntax error: {getattr(e, 'msg', e)}", path,
                          getattr(e, "lineno", None)) from None
    for key, value in data.items():
        if key not in _PRESET_KEYS or not isinstance(value, dict):
            raise PresetError(f"unknown or malformed table [{key}] (allowed: preset, params, "
                              "shaders)", path)
        allowed = _PRESET_KEYS[key]
        for k in value:
            if allowed is not None and k not in allowed:
                raise PresetError(f"unknown key {k!r} in [{key}]", path)
    p = data.get("preset", {})
    mapping = p.get("mapping")
    if not isinstance(mapping, str) or not mapping:
        raise PresetError("[preset] mapping must name the mapping file", path)
    out = Preset(name=name, mapping=mapping)
    if "scene" in p:
        if not isinstance(p["scene"], str):
            raise PresetError("[preset] scene must be a scene name", path)
        out.scene = p["scene"]
    cf = p.get("crossfade", 2.0)
    if isinstance(cf, bool) or not isinstance(cf, (int, float)) or not 0 <= cf <= 3600:
        raise PresetError("[preset] crossfade must be 0..3600 seconds", path)
    out.crossfade = float(cf)
    if "keyframes" in p:
        kf = p["keyframes"]
        if not isinstance(kf, str) or not NAME_RE.match(kf.removesuffix(".npy")) \
                or not kf.endswith(".npy"):
            raise PresetError("[preset] keyframes must be a .npy file name beside the preset",
                              path)
        out.keyframes = read_array(path.parent / kf, ndim=(2,))
    for k, v in data.get("params", {}).items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise PresetError(f"[params] {k} must be a number", path)
        out.params[k] = float(v)
    sh = data.get("shaders", {})
    chain = sh.get("chain", [])
    if not isinstance(chain, list) or not all(isinstance(c, str) and NAME_RE.match(c)
                                              for c in chain):
        raise PresetError("[shaders] chain must be a list of effect names", path)
    out.chain = list(chain)
    inputs = sh.get("inputs", {})
    if not isinstance(inputs, dict):
        raise PresetError("[shaders] inputs must be a table", path)
    for k, v in inputs.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise PresetError(f"[shaders] inputs {k!r} must be a number", path)
        out.inputs[k] = float(v)
    return out


def read_array(path: Path, ndim: tuple[int, ...] = (1, 2, 3)) -> np.ndarray:
    """A finite float32 array from a ``.npy`` file (never unpickled)."""
    try:
        data = safeio.read_bytes(path, MAX_ARRAY_BYTES, ".npy array")
        a = _npy_array(data, path)
    except FileNotFoundError:
        raise PresetError(f"{path} not found") from None
    except safeio.FileRefused as e:
        raise PresetError(str(e)) from None
    except (OSError, ValueError, EOFError) as e:
        raise PresetError(f"{path} is not a readable .npy array ({e})") from None
    if a.dtype.kind not in "fiu" or a.ndim not in ndim or a.size == 0:
        raise PresetError(f"{path} holds {a.dtype} {list(a.shape)}, not a latent array")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise PresetError(f"{path} holds NaN or infinite values")
    return a


def _npy_array(data: bytes, path: Path) -> np.ndarray:
    """``np.load`` of ``data`` once its header's shape is known to fit the bytes there.

    A header may claim any shape, and numpy allocates it before it finds the data missing;
    checking first keeps a 100-byte file from asking for terabytes."""
    buf = io.BytesIO(data)
    fmt = np.lib.format
    version = fmt.read_magic(buf)
    header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, _, dtype = header(buf)
    if dtype.hasobject or dtype.itemsize == 0:
        raise ValueError(f"holds {dtype}, not numbers")
    need = math.prod(shape) * dtype.itemsize
    if need != len(data) - buf.tell():
        raise ValueError(f"its header says {list(shape)} {dtype} ({need} bytes), the file holds "
                         f"{len(data) - buf.tell()}")
    buf.seek(0)
    return np.load(buf, allow_pickle=False)


def save_latent(folder: str | Path, name: str, w_plus: np.ndarray,
                overwrite: bool = False) -> Path:
    """Save one ``w_plus`` as ``<folder>/<name>.npy``; an existing latent of that name is
    refused (PresetError) unless ``overwrite`` (the operator's ``--presets-overwrite``)."""
    name = check_name(name, "latent")
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = child_path(folder, name, ".npy", "latent name")
        data = _npy_bytes(w_plus)
        if overwrite:
            write_atomic(path, data)
        else:
            _refuse_existing((path,), "latent", name)
            write_new(path, data)
    except FileExistsError:
        raise PresetError(f"latent {name!r} exists already in {folder}; not replaced (start "
                          "lj run with --presets-overwrite to replace saved latents)") from None
    except FileRefused as e:
        raise PresetError(f"cannot save latent {name!r}: {e}") from None
    except OSError as e:
        raise PresetError(f"cannot save latent {name!r} in {folder}: {e.strerror or e}") from None
    return path


def load_latent(folder: str | Path, name: str, num_layers: int, w_dim: int) -> np.ndarray:
    """``<folder>/<name>.npy`` as float32 ``[num_layers, w_dim]`` (a ``[w_dim]`` file is
    repeated on every layer)."""
    name = check_name(name, "latent")
    a = read_array(Path(folder) / f"{name}.npy", ndim=(1, 2))
    if a.shape == (w_dim,):
        return np.repeat(a[None], num_layers, axis=0)
    if a.shape != (num_layers, w_dim):
        raise PresetError(f"latent {name!r} has shape {list(a.shape)}; this generator needs "
                          f"[{w_dim}] or [{num_layers}, {w_dim}]")
    return a
