"""Our own writer of NVlabs-format network pickles, for test fixtures.

It writes the record format NVlabs' ``torch_utils.persistence`` produces (a call to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with ``module_src``, ``class_name``
and the object's state), without any NVlabs code: the embedded ``module_src`` is a canary of ours
that would create a marker file if anything ever executed it.

Run ``python -m tests.model_fixtures`` to rewrite ``tests/data/models/sg2_orig16.pkl`` (G from
``sg2_orig16``, D from ``sg2d_resnet16``) and ``tests/data/models/sg3_cond32.pkl`` (the StyleGAN3
``cond`` weights of tests/test_stylegan3.py).

The discriminator fixtures ``sg2d_<name>`` (``.safetensors`` + ``.json``: weights drawn by *our*
code, :func:`build_d_weights`) and their reference outputs (``.ref.npz``) computed by NVlabs' own
``training.networks.Discriminator`` on the CPU, from a checkout kept outside this repository::

    python -m tests.model_fixtures --d-weights                         # our weights (seeded)
    python -m tests.model_fixtures --d-reference /tmp/nvsg2            # stylegan2-ada-pytorch
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


#: The NVlabs-form discriminator fixtures: name -> init kwargs (tiny: 16 or 32 px, 16 channels).
#: They cover the three architectures, a conditional D, float16 blocks (run in float32), a clamp
#: that really clamps, Freeze-D's frozen layers and the minibatch-stddev options.
D_FIXTURES = {
    "resnet16": dict(c_dim=0, img_resolution=16, img_channels=3, architecture="resnet",
                     channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=256),
    "skip32": dict(c_dim=0, img_resolution=32, img_channels=3, architecture="skip",
                   channel_base=512, channel_max=16, num_fp16_res=4, conv_clamp=256,
                   epilogue_kwargs={"mbstd_group_size": 2, "mbstd_num_channels": 2}),
    "orig16": dict(c_dim=0, img_resolution=16, img_channels=3, architecture="orig",
                   channel_base=256, channel_max=16, conv_clamp=1.5,
                   block_kwargs={"freeze_layers": 2}),
    "cond_resnet16": dict(c_dim=4, img_resolution=16, img_channels=3, architecture="resnet",
                          channel_base=256, channel_max=16, conv_clamp=256,
                          mapping_kwargs={"num_layers": 2}),
}


def build_d_weights(name: str) -> Path:
    """Draw the weights of the discriminator fixture ``name`` with our network (seeded; biases
    and frozen weights random too, so that every tensor matters) and write
    ``sg2d_<name>.safetensors`` + ``.json``."""
    from safetensors.torch import save_file

    from engine.studio.nvlabs_discriminator import NVlabsDiscriminator

    torch.manual_seed(sorted(D_FIXTURES).index(name) + 100)
    net = NVlabsDiscriminator(**D_FIXTURES[name])
    state = net.state_dict()
    for key, value in state.items():
        if not key.endswith("resample_filter"):
            noise = torch.randn(value.shape) * (100 if key.startswith("mapping.") else 1)  # lr x 0.01
            value.copy_(noise if key.endswith("weight") else 0.2 * noise)
    save_file({k: v.contiguous() for k, v in state.items()}, str(MODELS / f"sg2d_{name}.safetensors"))
    (MODELS / f"sg2d_{name}.json").write_text(json.dumps({"init_kwargs": D_FIXTURES[name]}, indent=1) + "\n")
    return MODELS / f"sg2d_{name}.safetensors"


def d_network(name: str) -> torch.nn.Module:
    """Our NVlabs-form discriminator with the committed weights of fixture ``name``."""
    from safetensors.torch import load_file

    from engine.studio.nvlabs_discriminator import NVlabsDiscriminator

    kwargs = json.loads((MODELS / f"sg2d_{name}.json").read_text())["init_kwargs"]
    net = NVlabsDiscriminator(**kwargs)
    net.load_state_dict(load_file(str(MODELS / f"sg2d_{name}.safetensors")), strict=True)
    return net


def d_reference_inputs(name: str) -> dict:
    """The fixed inputs of the reference: 4 images in [-1, 1] and one-hot labels."""
    kwargs = D_FIXTURES[name]
    g = torch.Generator().manual_seed(7)
    r = kwargs["img_resolution"]
    img = torch.rand(4, kwargs["img_channels"], r, r, generator=g) * 2 - 1
    out = {"img": img}
    if kwargs["c_dim"]:
        out["c"] = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 3]) % kwargs["c_dim"],
                                               kwargs["c_dim"]).float()
    return out


def write_d_reference(name: str, nvlabs_root: str) -> Path:
    """Run NVlabs' ``training.networks.Discriminator`` (from the checkout ``nvlabs_root``, not
    part of this repository) with the fixture's weights, in float32 (``force_fp32``) on the CPU,
    and save its logits and the gradient of their sum with respect to the images:
    ``sg2d_<name>.ref.npz``."""
    import sys

    import numpy as np

    sys.path.insert(0, str(nvlabs_root))
    from training.networks import Discriminator  # NVlabs' code, from outside this repository

    ours = d_network(name)
    theirs = Discriminator(**D_FIXTURES[name])
    theirs.load_state_dict(ours.state_dict(), strict=True)
    inputs = d_reference_inputs(name)
    img = inputs["img"].clone().requires_grad_(True)
    logits = theirs(img, inputs.get("c"), force_fp32=True)   # float32 throughout, as ours runs
    grad, = torch.autograd.grad(logits.sum(), img)
    arrays = {"img": inputs["img"].numpy(), "logits": logits.detach().numpy(), "grad": grad.numpy()}
    if "c" in inputs:
        arrays["c"] = inputs["c"].numpy()
    out = MODELS / f"sg2d_{name}.ref.npz"
    np.savez(out, **arrays)
    return out


def discriminator_record(net: torch.nn.Module, init_kwargs: dict, module_src: str = CANARY_SRC) -> Record:
    """An NVlabs-form discriminator as the ``D`` record of a pickle."""
    return Record("Discriminator", module_state(net, init_kwargs), module_src)


def orig16_generator_record() -> Record:
    """The ``sg2_orig16`` generator (safetensors + JSON) as a pickle's ``G`` record."""
    from safetensors.torch import load_file

    from engine.generators.stylegan2 import Generator

    meta = json.loads((MODELS / "sg2_orig16.json").read_text())
    net = Generator(**meta["init_kwargs"])
    net.load_state_dict(load_file(str(MODELS / "sg2_orig16.safetensors")), strict=True)
    return generator_record(net, meta["init_kwargs"])


def build_orig16_fixture(out: Path = MODELS / "sg2_orig16.pkl") -> Path:
    """The ``sg2_orig16`` weights rewritten as an NVlabs-format pickle, with the
    ``sg2d_resnet16`` discriminator as its ``D``."""
    d_record = discriminator_record(d_network("resnet16"), D_FIXTURES["resnet16"])
    return write_pickle(out, orig16_generator_record(), d_record, training_set_kwargs={"resolution": 16})


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
    import sys

    if sys.argv[1:2] == ["--d-weights"]:
        for d_name in D_FIXTURES:
            print(build_d_weights(d_name))
    elif sys.argv[1:2] == ["--d-reference"] and len(sys.argv) == 3:
        for d_name in D_FIXTURES:
            print(write_d_reference(d_name, sys.argv[2]))
    else:
        print(build_orig16_fixture())
        print(build_sg3_fixture())
