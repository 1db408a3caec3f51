"""Read NVlabs StyleGAN ``.pkl`` files without NVlabs' code and without running anything in them.

A network pickled by NVlabs' training code (stylegan2-ada-pytorch, stylegan3) is a *persistent
object*: the pickle calls ``torch_utils.persistence._reconstruct_persistent_obj(meta)``, where
``meta`` carries the Python source of the module that defined the class (``module_src``), the class
name and the object's ``__dict__`` (init arguments, parameters, buffers, child modules). A normal
unpickler imports that source and executes it. This reader does not:

* :class:`RestrictedUnpickler` resolves only the globals in :data:`ALLOWED`, each mapped to a
  function of ours that builds plain data: the persistence call becomes an inert
  :class:`PersistentRecord` (``module_src`` is kept as a string, never compiled); tensors and their
  storages are rebuilt from raw bytes by our own parser of torch's storage format; ``OrderedDict``,
  dnnlib's ``EasyDict`` (a ``dict``), sets and the numpy scalar/dtype constructors that the
  pickles use for a few float attributes. Anything else is refused with a :class:`ModelError`
  that names the file and the global.
* :func:`read_pickle` returns the top-level dict (``G``, ``G_ema``, ``D``, ...) of records;
  :func:`build_generator` picks ``G_ema`` (else ``G``), walks its record for the init keyword
  arguments and the parameter/buffer state, checks the size against the memory available, builds
  our own network (:mod:`engine.generators.stylegan2`, or the StyleGAN3 module) and loads the
  state with ``strict=True``. The discriminator's record stays available (``records["D"]``),
  unbuilt; the studio builds it (:mod:`engine.studio.nvlabs_discriminator`).

Bounds (a pickle of a few hundred bytes must not make gigabytes): before anything is built, every
pickle (the file's and the small ones inside each storage) is scanned opcode by opcode
(:func:`_prescan`: at most :data:`MAX_OPS` opcodes, memo slots numbered in order as a pickler
writes them, no integer over :data:`MAX_INT_BITS` bits, frames inside the file). While it is built,
the constructors we allow count what they copy (at most :data:`MAX_ELEMENTS` elements), tensor
data read from storages may not exceed the file's own size (a storage referenced many times is
read many times) nor the memory available, and a storage is copied out into tensors at most
:data:`MAX_VIEWS` times its size. After it is built, the object graph is walked once
(:func:`_check_graph`) counting every reference as its full expansion, as a copy or an export
would make it: at most :data:`MAX_NODES` objects, :data:`MAX_TEXT` bytes of strings, nesting
at most :data:`MAX_DEPTH` deep, no container that contains itself. A file over a bound is refused
with a one-line :class:`ModelError` naming it.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import pickletools
import re
import struct
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine import safeio
from engine.errors import GeneratorError

log = logging.getLogger("lj.generator")

#: The only record format version NVlabs' persistence module has ever written.
PERSISTENCE_VERSION = 6

#: Bounds on what one pickle may make (see the module docstring). A real StyleGAN2 pickle of a
#: 1024 px network has ~5k opcodes per 100 layers, a few thousand objects and tiny integers.
MAX_OPS = 4_000_000
MAX_INT_BITS = 256
MAX_ELEMENTS = 1_000_000
MAX_NODES = 1_000_000
MAX_TEXT = 256 << 20
MAX_DEPTH = 64
MAX_VIEWS = 4


class ModelError(GeneratorError):
    """A model file that cannot be loaded: ``str()`` is one line naming the file and the problem."""

    def __init__(self, path, message: str):
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


# ---------------------------------------------------------------------------------------------
# Inert stand-ins


@dataclass
class PersistentRecord:
    """What ``_reconstruct_persistent_obj(meta)`` stood for: a class name and an object state.

    ``module_src`` is the embedded source, kept only as text (to tell network families apart).
    """

    class_name: str
    module_src: str
    state: dict
    version: int

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()) or ())

    @property
    def init_kwargs(self) -> dict:
        return _plain(self.state.get("_init_kwargs", {}) or {})

    def children(self) -> dict:
        return dict(self.state.get("_modules", {}) or {})

    def state_dict(self, prefix: str = "") -> "OrderedDict[str, torch.Tensor]":
        """Parameters and persistent buffers of this record and its children, with module paths
        as keys (what ``Module.state_dict()`` would return)."""
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        skip = set(self.state.get("_non_persistent_buffers_set", ()) or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group, {}) or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
                out[prefix + name] = value
        for name, child in self.children().items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise TypeError(f"{prefix}{name} is a {type(child).__name__}, not a network record")
            out.update(child.state_dict(f"{prefix}{name}."))
        return out


def _plain(value):
    """EasyDicts and OrderedDicts -> dicts, lists of them too (init kwargs as plain data)."""
    if isinstance(value, _NDArray):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict):
        raise pickle.UnpicklingError("a persistent object without its record")
    if meta.get("type") != "class":
        raise pickle.UnpicklingError(f"a persistent object of type {meta.get('type')!r}")
    version = meta.get("version")
    if version != PERSISTENCE_VERSION:
        raise pickle.UnpicklingError(f"persistence format version {version!r} (known: {PERSISTENCE_VERSION})")
    state = meta.get("state")
    src = meta.get("module_src")
    name = meta.get("class_name")
    if not isinstance(state, dict) or not isinstance(src, str) or not isinstance(name, str):
        raise pickle.UnpicklingError("a persistent object with a malformed record")
    _count_elements(len(state))
    return PersistentRecord(name, src, dict(state), version)


class _DType:
    """``numpy.dtype(name, align, copy)`` as pickled, before its byte order arrives by BUILD."""

    ALLOWED = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}

    def __init__(self, name, align=False, copy=True):
        if not isinstance(name, str) or name not in self.ALLOWED:
            raise pickle.UnpicklingError(f"numpy dtype {name!r} is not a plain number type")
        self.name = name
        self.order = "<"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = state[1]

    def numpy(self) -> np.dtype:
        return np.dtype(self.name).newbyteorder("<" if self.order in ("|", "=") else self.order)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _DType) or not isinstance(data, bytes):
        raise pickle.UnpicklingError("a numpy scalar that is not a plain number")
    dt = dtype.numpy()
    if len(data) != dt.itemsize:
        raise pickle.UnpicklingError("a numpy scalar with the wrong number of bytes")
    return np.frombuffer(data, dtype=dt)[0].item()


class _NDArrayType:
    """Stands for ``numpy.ndarray`` (only as the first argument of ``_reconstruct``)."""


class _NDArray:
    """A numpy array being unpickled: ``_reconstruct`` makes it, BUILD fills it (plain numbers
    only; StyleGAN3 layers keep a few small arrays as attributes)."""

    def __init__(self):
        self.value = None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError("a numpy array with a malformed state")
        _version, shape, dtype, fortran, raw = state
        if not isinstance(dtype, _DType) or not isinstance(raw, (bytes, bytearray)):
            raise pickle.UnpicklingError("a numpy array that is not plain numbers")
        if not isinstance(shape, tuple) or len(shape) > 32 or not all(isinstance(n, int) for n in shape):
            raise pickle.UnpicklingError("a numpy array with a malformed shape")
        _count_elements(len(raw) // 16 + 1)  # the same bytes may be BUILT into many arrays
        dt = dtype.numpy()
        if any(n < 0 for n in shape) or int(np.prod(shape, dtype=np.int64)) * dt.itemsize != len(raw):
            raise pickle.UnpicklingError("a numpy array whose data does not match its shape")
        self.value = np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order="F" if fortran else "C").copy()


def _np_reconstruct(cls, shape=None, typecode=None):
    if cls is not _NDArrayType:
        raise pickle.UnpicklingError("numpy _reconstruct of something that is not an array")
    return _NDArray()


# Storage classes named inside a tensor's bytes -> dtype.
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    """A flat tensor standing for a torch storage (what ``_rebuild_tensor_v2`` views).

    ``copied`` counts the bytes cloned out of it, so one storage referenced from many tensors
    cannot be copied without bound."""

    def __init__(self, flat: torch.Tensor):
        self.flat = flat
        self.copied = 0


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _storage_header(blob: bytes, budget: "_Budget") -> tuple:
    """Parse torch's legacy serialisation of one storage: header pickles, the object pickle (a
    persistent id naming the storage), its keys, then for each key ``int64 numel`` + raw bytes."""
    f = io.BytesIO(blob)
    for _ in range(3):  # magic number, protocol version, system info: plain data only
        _InnerUnpickler(f, {}).load()
    ids = []
    inner = _InnerUnpickler(f, {}, persistent=ids.append)
    inner.load()
    keys = _InnerUnpickler(f, {}).load()
    if not ids or not isinstance(keys, list):
        raise pickle.UnpicklingError("a tensor storage without data")
    by_key = {}
    for pid in ids:
        if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError("a tensor storage with a malformed header")
        if len(pid) > 5 and pid[5] is not None:
            raise pickle.UnpicklingError("a tensor storage view (not supported)")
        by_key[str(pid[2])] = pid
    storages = {}
    for key in keys:
        pid = by_key.get(str(key))
        if pid is None:
            raise pickle.UnpicklingError("tensor data for an unknown storage")
        raw = f.read(8)
        if len(raw) != 8:
            raise pickle.UnpicklingError("tensor data truncated")
        (numel,) = struct.unpack("<q", raw)
        dtype = pid[1].dtype
        nbytes = numel * _element_size(dtype)
        if numel < 0 or numel != int(pid[4]):
            raise pickle.UnpicklingError("tensor data with an inconsistent size")
        budget.take(nbytes)
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise pickle.UnpicklingError("tensor data truncated")
        storages[str(key)] = _flat(data, dtype)
    if len(ids) != 1 or str(ids[0][2]) not in storages:
        raise pickle.UnpicklingError("a tensor storage with a malformed header")
    return storages[str(ids[0][2])]


def _zip_storage(blob: bytes, budget: "_Budget") -> torch.Tensor:
    """torch's zip serialisation of one storage (``data.pkl`` + ``data/<key>``)."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise pickle.UnpicklingError("a zipped tensor storage without data.pkl")
        root = pkl[: -len("data.pkl")]
        ids = []
        _InnerUnpickler(io.BytesIO(zf.read(pkl)), {}, persistent=ids.append).load()
        if len(ids) != 1:
            raise pickle.UnpicklingError("a zipped tensor storage with several roots")
        pid = ids[0]
        if not (isinstance(pid, tuple) and len(pid) >= 5 and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError("a zipped tensor storage with a malformed header")
        dtype = pid[1].dtype
        nbytes = int(pid[4]) * _element_size(dtype)
        info = zf.getinfo(f"{root}data/{pid[2]}")
        if info.file_size != nbytes:
            raise pickle.UnpicklingError("tensor data with an inconsistent size")
        budget.take(nbytes)
        return _flat(zf.read(info), dtype)


def _flat(data: bytes, dtype: torch.dtype) -> torch.Tensor:
    if not data:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=dtype)


class _Budget:
    """Counts tensor bytes as they are read and stops before they outgrow the memory, or the
    file (``file_bytes``: honest storages are each read once, from bytes the file holds)."""

    def __init__(self, limit: int, file_bytes: int | None = None):
        self.limit = limit
        self.file_bytes = file_bytes
        self.used = 0

    def take(self, nbytes: int) -> None:
        self.used += nbytes
        if self.used > self.limit:
            raise MemoryError(self.used)
        if self.file_bytes is not None and self.used > self.file_bytes:
            raise _Bounded(f"it declares more tensor data ({self.used} bytes so far) than the file "
                           f"holds ({self.file_bytes} bytes): one storage read many times")


class _Bounded(pickle.UnpicklingError):
    """A pickle over one of the bounds: ``args[0]`` says which, on one line."""


class _Counter(threading.local):
    """Elements the allowed constructors copied during the current load on this thread."""

    def __init__(self):
        self.left = None   # None: not counting (outside read_pickle)


_elements = _Counter()


def _count_elements(n: int) -> None:
    if _elements.left is None:
        return
    _elements.left -= int(n)
    if _elements.left < 0:
        raise _Bounded(f"its constructors would copy more than {MAX_ELEMENTS} elements "
                       "(a shared list or dict expanded many times)")


def _counted(factory):
    """``factory`` (OrderedDict, dict, set, frozenset) charging the length of what it copies."""
    def make(*args, **kwargs):
        if args and hasattr(args[0], "__len__"):
            _count_elements(len(args[0]))
        elif args:
            raise pickle.UnpicklingError(f"a {factory.__name__} built from an iterator")
        _count_elements(len(kwargs))
        return factory(*args, **kwargs)
    make.__name__ = factory.__name__
    return make


def _prescan(f) -> None:
    """Walk one pickle's opcodes from ``f``'s position to its STOP (nothing built) and refuse
    what the C unpickler would turn into unbounded work: too many opcodes, memo slots out of
    order (a huge index makes it allocate the memo up to that index), huge integers, frames
    longer than the data. ``f`` is put back where it was."""
    start = f.tell()
    memo = ops = 0
    try:
        for op, arg, pos in pickletools.genops(f):
            ops += 1
            if ops > MAX_OPS:
                raise _Bounded(f"more than {MAX_OPS} pickle opcodes")
            name = op.name
            if name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not isinstance(arg, int) or arg > memo:
                    raise _Bounded(f"memo slot {arg} out of order (a pickler numbers them 0, 1, 2...)")
                memo = max(memo, arg + 1)
            elif name == "MEMOIZE":
                memo += 1
            elif isinstance(arg, int) and not isinstance(arg, bool) and arg.bit_length() > MAX_INT_BITS:
                raise _Bounded(f"an integer of {arg.bit_length()} bits (at most {MAX_INT_BITS})")
            if name == "FRAME" and arg > len(f.getbuffer()) - f.tell():
                raise pickle.UnpicklingError("pickle data was truncated (a frame longer than the data)")
    except ValueError as exc:  # pickletools: a length past the end, bad text, ...
        detail = str(exc).splitlines()[0][:120] if str(exc) else "malformed"
        raise pickle.UnpicklingError(f"pickle data truncated or malformed ({detail})") from None
    f.seek(start)


def _check_graph(root) -> None:
    """Refuse an unpickled object graph whose expansion is too big, too deep or cyclic.

    Every reference to a container counts as its whole expansion (what ``_plain``, a JSON
    export or ``copy.deepcopy`` would make of it); sizes are memoised per object, so the walk
    is linear in the graph, whatever its expansion. Explicit stack: no recursion."""
    done: dict[int, tuple[int, int, int]] = {}   # id -> (objects, text bytes, depth) expanded
    active: set[int] = set()
    stack = [(root, False)]
    keep = []   # objects made on the way (a record's state) stay alive while ids are compared
    while stack:
        obj, leaving = stack.pop()
        kids = _children(obj)
        if kids is None:
            continue
        key = id(obj)
        if not leaving:
            if key in done:
                continue
            if key in active:
                raise _Bounded("a container that contains itself")
            active.add(key)
            keep.append(kids)
            stack.append((obj, True))
            stack.extend((k, False) for k in kids if _children(k) is not None and id(k) not in done)
            continue
        active.discard(key)
        nodes, text, depth = 1, 0, 1
        for k in kids:
            sub = done.get(id(k))
            if sub is None:
                if isinstance(k, (str, bytes, bytearray)):
                    text += len(k)
                nodes += 1
                continue
            nodes, text, depth = nodes + sub[0], text + sub[1], max(depth, sub[2] + 1)
        if nodes > MAX_NODES:
            raise _Bounded(f"it expands to more than {MAX_NODES} objects (shared lists or dicts)")
        if text > MAX_TEXT:
            raise _Bounded(f"it expands to more than {MAX_TEXT >> 20} MiB of strings")
        if depth > MAX_DEPTH:
            raise _Bounded(f"it is nested more than {MAX_DEPTH} levels deep")
        done[key] = (nodes, text, depth)


def _children(obj):
    """The objects a container refers to (keys and values), or None for a leaf."""
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, PersistentRecord):
        return [obj.class_name, obj.module_src, obj.state]
    if isinstance(obj, _NDArray):
        return [obj.value]
    return None


def _rebuild_tensor(storage, offset, size, stride, *rest):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without its data")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(s < 0 for s in size) or int(offset) < 0:
        raise pickle.UnpicklingError("a tensor with a malformed shape")
    flat = storage.flat
    if all(size):
        last = int(offset) + sum((n - 1) * st for n, st in zip(size, stride))
        if any(st < 0 for st in stride) or last >= flat.numel():
            raise pickle.UnpicklingError("a tensor larger than its data")
    numel = 1
    for n in size:
        numel *= n
    storage.copied += numel * flat.element_size()
    if storage.copied > MAX_VIEWS * max(1, flat.numel() * flat.element_size()):
        raise _Bounded(f"one tensor storage is copied out more than {MAX_VIEWS} times its size")
    return torch.as_strided(flat, size, stride, int(offset)).clone()


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *state):
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter without a tensor")
    return data


class _RestrictedBase(pickle.Unpickler):
    """An unpickler whose ``find_class`` knows only the globals given to it."""

    def __init__(self, file, allowed: dict, persistent=None):
        _prescan(file)   # before the C unpickler builds anything
        super().__init__(file)
        self._allowed = allowed
        self._persistent = persistent

    def find_class(self, module, name):
        fn = self._allowed.get((module, name))
        if fn is None:
            raise _Refused(f"{module}.{name}")
        return fn

    def persistent_load(self, pid):
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent reference")
        self._persistent(pid)
        return pid


class _InnerUnpickler(_RestrictedBase):
    """Reads the small pickles inside a storage's bytes: only storage class names are allowed."""

    def __init__(self, file, _unused, persistent=None):
        super().__init__(file, {("torch", n): _StorageType(n) for n in _STORAGE_DTYPES}, persistent)


class _Refused(pickle.UnpicklingError):
    """A global outside the allow list: ``args[0]`` is its dotted name."""


def _allowed(budget: _Budget) -> dict:
    def load_from_bytes(blob):
        if not isinstance(blob, (bytes, bytearray)):
            raise pickle.UnpicklingError("tensor data that is not bytes")
        blob = bytes(blob)
        flat = _zip_storage(blob, budget) if blob[:2] == b"PK" else _storage_header(blob, budget)
        return _Storage(flat)

    table = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("collections", "OrderedDict"): _counted(OrderedDict),
        ("builtins", "set"): _counted(set),
        ("builtins", "frozenset"): _counted(frozenset),
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): load_from_bytes,
        ("dnnlib.util", "EasyDict"): _counted(dict),
        ("dnnlib", "EasyDict"): _counted(dict),
        ("numpy", "dtype"): _DType,
        ("numpy", "ndarray"): _NDArrayType,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "scalar")] = _numpy_scalar
        table[(mod, "_reconstruct")] = _np_reconstruct
    return table


#: The globals an NVlabs pickle may name (for the docs and the tests).
ALLOWED = tuple(f"{m}.{n}" for m, n in _allowed(_Budget(0)))


class RestrictedUnpickler(_RestrictedBase):
    """Unpickle an NVlabs network file into plain records; refuse every other global."""

    def __init__(self, file, budget: _Budget):
        super().__init__(file, _allowed(budget))


# ---------------------------------------------------------------------------------------------
# Reading


def available_memory() -> int:
    """Bytes of memory this process may still use (MemAvailable; a cgroup limit when lower)."""
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 1 << 62
    for cg in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(cg).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            avail = min(avail, int(text))
    return avail


def _gb(n: int) -> str:
    return f"{n / 2 ** 30:.1f} GB" if n >= 2 ** 27 else f"{n / 2 ** 20:.1f} MB"


def read_pickle(path, memory_limit: int | None = None) -> dict:
    """Read an NVlabs pickle into ``{name: PersistentRecord | plain data}`` (nothing executed).

    ``memory_limit`` (bytes, default: the memory available) bounds the file and the tensor data
    it declares. Every failure is a :class:`ModelError` naming ``path``.
    """
    path = Path(path)
    limit = available_memory() if memory_limit is None else int(memory_limit)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(path, f"cannot read the model: {exc.strerror or exc}") from None
    if size > limit:
        raise ModelError(path, f"the model file ({_gb(size)}) is larger than the memory available ({_gb(limit)})")
    try:
        data = safeio.read_bytes(path, limit, "model")
    except safeio.FileRefused as exc:
        raise ModelError(path, exc.reason) from None
    except OSError as exc:
        raise ModelError(path, f"cannot read the model: {exc.strerror or exc}") from None
    if not data:
        raise ModelError(path, "the file is empty")
    if data[:2] == b"PK":
        raise ModelError(path, "this is a torch.save() zip archive, not an NVlabs network pickle "
                               "(use our exported .safetensors or a TorchScript file)")
    if data[:1] != b"\x80":
        raise ModelError(path, "not a pickle file (corrupt, or another format)")
    budget = _Budget(max(0, limit - len(data)), file_bytes=len(data))
    _elements.left = MAX_ELEMENTS
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), budget).load()
        _check_graph(obj)
    except _Bounded as exc:
        raise ModelError(path, f"refused: {exc.args[0]}") from None
    except RecursionError:
        raise ModelError(path, "refused: nested too deeply to read") from None
    except _Refused as exc:
        raise ModelError(path, f"refused: the pickle asks for '{exc.args[0]}', which a network "
                               "file never needs (only tensors and NVlabs network records are "
                               "read; nothing in the file is executed)") from None
    except MemoryError as exc:
        need = exc.args[0] if exc.args and isinstance(exc.args[0], int) else size
        raise ModelError(path, f"the model's tensors ({_gb(need)}+) do not fit in the memory "
                               f"available ({_gb(limit)})") from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, struct.error, zipfile.BadZipFile, RuntimeError, OverflowError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, EOFError) or "truncated" in detail or "ran out of input" in detail.lower():
            raise ModelError(path, f"the file is truncated or corrupt ({detail})") from None
        raise ModelError(path, f"corrupt or unsupported pickle ({detail})") from None
    finally:
        _elements.left = None
    if isinstance(obj, PersistentRecord):
        obj = {"G_ema": obj}
    if not isinstance(obj, dict):
        raise ModelError(path, f"the pickle holds a {type(obj).__name__}, not a dict of networks")
    return obj


# ---------------------------------------------------------------------------------------------
# Building our networks from the records


def generator_record(records: dict, path) -> PersistentRecord:
    """``G_ema`` (the averaged weights NVlabs samples with), else ``G``."""
    for key in ("G_ema", "G"):
        rec = records.get(key)
        if isinstance(rec, PersistentRecord):
            return rec
    names = ", ".join(sorted(map(str, records))) or "nothing"
    raise ModelError(path, f"no generator in the pickle (expected G_ema or G; found {names})")


def family(rec: PersistentRecord, state: dict) -> str:
    """``"stylegan2"`` or ``"stylegan3"``, from the state's layout (and the source text)."""
    if rec.class_name != "Generator":
        return rec.class_name
    if any(k.startswith("synthesis.input.") for k in state):
        return "stylegan3"
    if "synthesis.b4.const" in state:
        return "stylegan2"
    return "unknown"


def network_class(kind: str, path):
    if kind == "stylegan2":
        from engine.generators.stylegan2 import Generator

        return Generator
    if kind == "stylegan3":
        try:
            from engine.generators.stylegan3 import Generator
        except ImportError:
            raise ModelError(path, "this is a StyleGAN3 model and StyleGAN3 support is missing "
                                   "from this build (engine/generators/stylegan3.py)") from None
        return Generator
    raise ModelError(path, f"unsupported network '{kind}' (supported: StyleGAN2, StyleGAN2-ADA, "
                           "StyleGAN3 generators)")


def _meta_size(cls, args, kwargs) -> int:
    """Bytes of parameters + buffers the network would allocate (built on the meta device)."""
    with torch.device("meta"):
        net = cls(*args, **kwargs)
    return sum(t.numel() * t.element_size() for t in list(net.parameters()) + list(net.buffers()))


def build_from_record(rec: PersistentRecord, path, memory_limit: int | None = None) -> torch.nn.Module:
    """Our network for a generator record, its state loaded strictly, in eval mode."""
    try:
        state = rec.state_dict()
    except TypeError as exc:
        raise ModelError(path, f"malformed network record: {exc}") from None
    cls = network_class(family(rec, state), path)
    args, kwargs = rec.init_args, rec.init_kwargs
    limit = available_memory() if memory_limit is None else int(memory_limit)
    try:
        need = _meta_size(cls, args, kwargs)
    except (TypeError, ValueError, KeyError, AssertionError, RuntimeError, ZeroDivisionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        m = re.search(r"unexpected keyword argument '([^']+)'", detail)
        if m:  # e.g. a newer NVlabs version's option our network does not know
            raise ModelError(path, f"unknown {family(rec, state).replace('stylegan', 'StyleGAN')} init argument '{m.group(1)}' in the "
                                   f"pickle (this loader knows NVlabs' published arguments)") from None
        raise ModelError(path, f"the generator's architecture arguments are not understood ({detail})") from None
    if need > limit:
        raise ModelError(path, f"the generator needs {_gb(need)} of memory, more than the "
                               f"{_gb(limit)} available")
    try:
        net = cls(*args, **kwargs)
        missing, unexpected = load_state(net, state)
    except (TypeError, ValueError, KeyError, AssertionError, ZeroDivisionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(path, f"the generator's architecture arguments are not understood ({detail})") from None
    if missing or unexpected:
        raise ModelError(path, "the weights do not match the architecture: "
                         + mismatch(missing, unexpected))
    return net.eval().requires_grad_(False)


def mismatch(missing: list, unexpected: list) -> str:
    """``"missing a, b ...; unexpected c"``: what :func:`load_state` found, shortened."""
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}")
    if unexpected:
        parts.append(f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}")
    return "; ".join(parts)


def load_state(net: torch.nn.Module, state: dict):
    """``load_state_dict(strict=True)``, reporting key and shape mismatches instead of raising."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        return missing, unexpected
    bad = [f"{k} {list(state[k].shape)} vs {list(own[k].shape)}" for k in own
           if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        return [], bad
    net.load_state_dict(state, strict=True)
    return [], []


@dataclass
class LoadedModel:
    """A network read from an NVlabs pickle: the built generator and the raw records."""

    path: str
    network: torch.nn.Module
    kind: str
    records: dict = field(repr=False, default_factory=dict)

    @property
    def discriminator(self) -> PersistentRecord | None:
        """The discriminator's record (unbuilt), for fine-tuning."""
        d = self.records.get("D")
        return d if isinstance(d, PersistentRecord) else None


def load_nvlabs_pickle(path, memory_limit: int | None = None) -> LoadedModel:
    """Read ``path`` safely and build its generator (``G_ema``, else ``G``)."""
    records = read_pickle(path, memory_limit)
    rec = generator_record(records, path)
    net = build_from_record(rec, path, memory_limit)
    kind = "stylegan3" if "synthesis.input.affine.weight" in net.state_dict() else "stylegan2"
    return LoadedModel(str(path), net, kind, records)
