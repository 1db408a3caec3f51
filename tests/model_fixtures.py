"""Our own writer of NVlabs-format network pickles, for test fixtures.

It writes the record format NVlabs' ``torch_utils.persistence`` produces (a call to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``module_src``, ``class_name``
and the object's state), without any NVlabs code: the embedded ``module_src`` is a canary of ours
that would create a marker file if anything ever executed it.

Run ``python -m tests.model_fixtures`` to rewrite ``tests/data/models/sg2_orig16.pkl`` and
``tests/data/models/sg3_cond32.pkl`` (the StyleGAN3 ``cond`` weights of tests/test_stylegan3.py).
"""

from __future__ import annotations

import io
import json
import pickle
from collections import OrderedDict
from pathlib import Path

import torch

MODELS = Path(__file__).parent / "data" / "models"

#: Executing this would leave a file behind: the tests prove nothing ever does.
CANARY_SRC = (
    "import os, pathlib\n"
    "pathlib.Path(os.environ.get('LJ_PICKLE_CANARY', '/tmp/lj-pickle-canary')).write_text('executed')\n"
    "class Generator: pass\n"
    "class Discriminator: pass\n"
)


class _Global:
    """A reference written as ``GLOBAL module name`` (callable only so pickle accepts it)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pragma: no cover - never called
        raise RuntimeError("a fixture reference is not callable")


class _Writer(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be extended
    dispatch = dict(pickle._Pickler.dispatch)

    def save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = save_global_ref


class Record:
    """An object that pickles as NVlabs' persistent-object record."""

    def __init__(self, class_name: str, state: dict, module_src: str = CANARY_SRC, version: int = 6):
        self.meta = dict(type="class", version=version, module_src=module_src,
                         class_name=class_name, state=state)

    def __reduce__(self):
        return (_Global("torch_utils.persistence", "_reconstruct_persistent_obj"), (self.meta,))


def module_state(module: torch.nn.Module, init_kwargs: dict, init_args=()) -> dict:
    """A module's ``__dict__`` the way NVlabs pickles it, children as records."""
    state = {"training": False,
             "_parameters": OrderedDict((k, v) for k, v in module._parameters.items()),
             "_buffers": OrderedDict((k, v) for k, v in module._buffers.items()),
             "_non_persistent_buffers_set": set(module._non_persistent_buffers_set),
             "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(),
             "_modules": OrderedDict(), "_init_args": tuple(init_args), "_init_kwargs": dict(init_kwargs)}
    for name, child in module._modules.items():
        state["_modules"][name] = Record(type(child).__name__, module_state(child, {}))
    for k, v in module.__dict__.items():  # plain attributes (ints, floats, strings)
        if not k.startswith("_") and isinstance(v, (int, float, str, bool, type(None))):
            state[k] = v
    return state


def write_pickle(path, g_record: Record, d_record: Record | None = None, **extra) -> Path:
    data = dict(G=g_record, G_ema=g_record, D=d_record, augment_pipe=None, **extra)
    buf = io.BytesIO()
    _Writer(buf, protocol=4).dump(data)
    Path(path).write_bytes(buf.getvalue())
    return Path(path)


def generator_record(net: torch.nn.Module, init_kwargs: dict, module_src: str = CANARY_SRC) -> Record:
    state = module_state(net, init_kwargs)
    for p in net.parameters():
        p.requires_grad_(True)
    state["_parameters"] = OrderedDict((k, v) for k, v in net._parameters.items())
    return Record("Generator", state, module_src)


def tiny_discriminator() -> Record:
    g = torch.Generator().manual_seed(3)
    state = {"training": False, "_init_args": (), "_init_kwargs": {"c_dim": 0, "img_resolution": 16, "img_channels": 3},
             "_parameters": OrderedDict(weight=torch.nn.Parameter(torch.randn(4, 3, 1, 1, generator=g))),
             "_buffers": OrderedDict(), "_modules": OrderedDict()}
    return Record("Discriminator", state)


def build_orig16_fixture(out: Path = MODELS / "sg2_orig16.pkl") -> Path:
    """The ``sg2_orig16`` weights (safetensors + JSON) rewritten as an NVlabs-format pickle."""
    from safetensors.torch import load_file

    from engine.generators.stylegan2 import Generator

    meta = json.loads((MODELS / "sg2_orig16.json").read_text())
    net = Generator(**meta["init_kwargs"])
    net.load_state_dict(load_file(str(MODELS / "sg2_orig16.safetensors")), strict=True)
    return write_pickle(out, generator_record(net, meta["init_kwargs"]), tiny_discriminator(),
                        training_set_kwargs={"resolution": 16})


def stylegan3_network(name: str) -> tuple[torch.nn.Module, dict]:
    """Our StyleGAN3 network with the committed weights ``tests/data/models/stylegan3/<name>``
    (``t``, ``r`` or ``cond``), and its init kwargs."""
    import numpy as np

    from engine.generators.stylegan3 import Generator

    folder = MODELS / "stylegan3" / name
    kwargs = json.loads((folder / "kwargs.json").read_text())
    blob = np.load(folder / "weights.npy", allow_pickle=False)
    index = json.loads((folder / "weights.json").read_text())["tensors"]
    state = {}
    for key, entry in index.items():
        size = int(np.prod(entry["shape"], dtype=np.int64))
        state[key] = torch.from_numpy(blob[entry["offset"]:entry["offset"] + size].reshape(entry["shape"]).copy())
    net = Generator(**kwargs)
    net.load_state_dict(state, strict=True)
    return net.eval(), kwargs


def write_stylegan3_pickle(name: str, out: Path, **extra_kwargs) -> Path:
    """The StyleGAN3 fixture ``name`` as an NVlabs-format pickle (G, G_ema, D records);
    ``extra_kwargs`` are added to the recorded init kwargs (to make bad files)."""
    net, kwargs = stylegan3_network(name)
    return write_pickle(out, generator_record(net, dict(kwargs, **extra_kwargs)), tiny_discriminator(),
                        training_set_kwargs={"resolution": kwargs["img_resolution"]})


def build_sg3_fixture(out: Path = MODELS / "sg3_cond32.pkl") -> Path:
    """The conditional StyleGAN3 fixture (``--fp32`` kwargs, 32 px, 4 classes) as a pickle."""
    return write_stylegan3_pickle("cond", out)


if __name__ == "__main__":
    print(build_orig16_fixture())
    print(build_sg3_fixture())
