"""Speed of a StyleGAN2-shaped generator (config-f channel counts, random weights) through the runner.

    python benchmarks/stylegan_speed.py [--arch sg2|sg3|cppn] [--sizes 256 512 1024] [--repeats 20] [--threads 2]

``--arch sg3`` times a StyleGAN3-T instead (our ``engine.generators.stylegan3`` with the shape of
NVlabs' ``--cfg=stylegan3-t``: z and w 512, 2 mapping layers, ``channel_base=32768``,
``channel_max=512``, 14 layers, ``num_fp16_res=4``, ``conv_clamp=256``; random weights, the input
transform driven through the runner's generator parameters), and adds the StyleGAN2 config-f of
the same size in eager fp32 as a peer (row ``sg2 eager fp32``), interleaved with the others.
``--arch cppn`` times the built-in generator (``builtin:cppn``, the default) the same way, with
the StyleGAN2 config-f as its peer too.

The network is our StyleGAN2 (``engine.generators.stylegan2``) with the config-f shape: z and w 512,
8 mapping layers, ``channel_base=32768``, ``channel_max=512``, ``num_fp16_res=4``,
``conv_clamp=256``, random weights, noise on (strength 1). For each size it times, interleaved so
that load from other processes hits every mode alike, the median ms/frame of:

* ``eager fp32``: ``GeneratorRunner.generate`` (truncation, synthesis, RGB8 conversion, the copy to
  the host) in float32 everywhere (``force_fp32``: not even the model's float16 blocks) without
  graphs: **the reference every ratio is measured against**;
* ``mixed + graph``: what ``lj run`` does with a model on CUDA by default: float32 weights, the
  blocks the model runs in float16 (``num_fp16_res``) in float16 as NVlabs' own tools do, the
  runner's CUDA graph (CUDA only);
* ``fp16``: the whole network in float16 (the runner's ``half``), eagerly (CUDA only);
* ``fp16 + graph``: float16 with the runner's CUDA graph capture (CUDA only);
* ``end-to-end``: one frame generated (in the last mode above, on a runner of its own: fp16 +
  graph on CUDA, eager fp32 on a CPU) and then displayed:
  handed to GL the way ``lj run`` hands it (:func:`engine.render.gpu_upload.make_uploader`: CUDA-GL
  interop device-to-device on CUDA when it works there, else pinned memory + PBOs; plain on a CPU;
  the path is printed), one effect pass (``feedback``) and the output pass, and ``glFinish``, on a
  headless EGL context. One frame's latency, nothing overlapped;
* ``pipelined``: the same, the way the live loop runs it: frame N+1 is generated on the runner's
  worker thread while frame N is displayed; ms/frame = wall time / frames (throughput).

Defaults: 256² only on a CPU (512² and 1024² take seconds per frame there), 256², 512² and 1024²
with CUDA. The 60 fps column says how many frames fit in a 16.7 ms budget.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.frame import FrameParams  # noqa: E402
from engine.generators.runner import GeneratorRunner  # noqa: E402
from engine.generators.stylegan import StyleGANGenerator  # noqa: E402
from engine.generators.stylegan2 import Generator  # noqa: E402

BUDGET_MS = 1000.0 / 60.0


def config_f(resolution: int) -> StyleGANGenerator:
    torch.manual_seed(0)
    net = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                    mapping_kwargs={"num_layers": 8},
                    synthesis_kwargs={"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4,
                                      "conv_clamp": 256})
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return StyleGANGenerator(net, name=f"config-f {resolution}")


def stylegan3_t(resolution: int) -> StyleGANGenerator:
    from engine.generators.stylegan3 import Generator as SG3

    torch.manual_seed(0)
    net = SG3(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
              mapping_kwargs={"num_layers": 2}, channel_base=32768, channel_max=512,
              magnitude_ema_beta=0.5 ** (32 / 20000))
    return StyleGANGenerator(net, name=f"stylegan3-t {resolution}")


def builtin_cppn(resolution: int):
    from engine.generators.cppn import CPPNGenerator

    return CPPNGenerator((resolution, resolution))


ARCHS = {"sg2": config_f, "sg3": stylegan3_t, "cppn": builtin_cppn}


def _params(gen, n: int = 8):
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        w = rng.standard_normal((gen.num_layers, gen.w_dim)).astype(np.float32) * 0.5
        moves = {"translate_x": 0.01 * i, "rotate": 2.0 * i} if gen.param_names else {}
        out.append(FrameParams(t=i / 60, w_plus=w, truncation=0.7, noise=1.0, generator=moves))
    return out


def _display(size: int, runner: GeneratorRunner):
    """A per-frame display step for ``runner``'s frames on a headless GL context, with the upload
    path ``lj run`` would pick for it; (None, reason) when there is no GL."""
    try:
        from engine.paths import SHADER_DIR
        from engine.render.context import headless_context
        from engine.render.gpu_upload import make_uploader
        from engine.render.pipeline import Renderer

        ctx = headless_context()
        renderer = Renderer(ctx, (size, size), (size, size), ["feedback"], SHADER_DIR)
        renderer.uploader = make_uploader(ctx, runner)
    except Exception as exc:  # no EGL here: report it, keep the other figures
        return None, f"no GL for the end-to-end figures: {str(exc).splitlines()[0]}"

    def show(frame, t: float) -> None:
        renderer.render(frame, {}, t, {})
        ctx.finish()

    return show, f"display: {ctx.info['GL_RENDERER']}, upload path {renderer.uploader.path}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="sg2",
                    help="sg2: StyleGAN2 config-f (default); sg3: StyleGAN3-T, cppn: the built-in "
                         "generator, each with sg2 as a peer")
    ap.add_argument("--sizes", type=int, nargs="+")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    sizes = args.sizes or ([256, 512, 1024] if cuda else [256])
    repeats = args.repeats or (200 if cuda else 5)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    build = ARCHS[args.arch]
    print(f"torch {torch.__version__}, {name}, {args.arch}, median of {repeats} frames per mode")
    print(f"{'size':>6} {'mode':>16} {'ms/frame':>9} {'per 60fps':>10} {'x eager fp32':>13}")
    for size in sizes:
        modes = {"eager fp32": dict(half=False, cuda_graph=False)}
        if cuda:
            # lj run's default for a model on CUDA: float32 weights, the model's own float16
            # blocks (num_fp16_res) in float16 as NVlabs' tools run them, CUDA graph
            modes["mixed + graph"] = dict(half=False, cuda_graph=True)
            modes["fp16"] = dict(half=True, cuda_graph=False)
            modes["fp16 + graph"] = dict(half=True, cuda_graph=True)
        runners = {}
        for mode, kw in modes.items():
            gen = build(size)
            gen.force_fp32 = mode == "eager fp32"  # no mixed-precision blocks in the reference
            runners[mode] = GeneratorRunner(gen, device=device, threaded=False, **kw)
        last = list(modes)[-1]  # the display side's mode: fp16 + graph on CUDA
        # the display side gets a runner of its own: with interop it hands out device frames
        e2e = GeneratorRunner(build(size), device=device, threaded=True, **modes[last])
        show, note = _display(size, e2e)
        print(f"  ({note})")
        params = _params(runners[last].generator)
        peer = None
        if args.arch != "sg2":  # the StyleGAN2 of the same size, as a peer
            gen = config_f(size)
            gen.force_fp32 = True
            peer = GeneratorRunner(gen, device=device, threaded=False)
            peer_params = _params(gen)
        times = {m: [] for m in list(modes) + (["end-to-end"] if show else [])
                 + (["sg2 eager fp32"] if peer else [])}
        warm = 3 if cuda else 1  # CUDA: warm-up and graph capture; a CPU needs one frame
        for m, r in runners.items():
            for p in params[:warm]:
                r.generate(p)
        for p in params[:warm]:
            e2e.submit(p)
            frame = e2e.result()
            if show:
                show(frame, p.t)
        if peer:
            for p in peer_params[:warm]:
                peer.generate(p)
        for i in range(repeats):
            p = params[i % len(params)]
            for m, r in runners.items():
                t0 = time.perf_counter()
                r.generate(p)
                times[m].append(time.perf_counter() - t0)
            if peer:
                t0 = time.perf_counter()
                peer.generate(peer_params[i % len(peer_params)])
                times["sg2 eager fp32"].append(time.perf_counter() - t0)
            if show:
                t0 = time.perf_counter()
                e2e.submit(p)
                show(e2e.result(), p.t)
                times["end-to-end"].append(time.perf_counter() - t0)
        ms_of = {m: statistics.median(v) * 1e3 for m, v in times.items()}
        if show:  # the live loop's overlap: generate N+1 on the worker while N is displayed
            e2e.submit(params[0])
            t0 = time.perf_counter()
            for i in range(repeats):
                frame = e2e.result()
                e2e.submit(params[(i + 1) % len(params)])
                show(frame, params[i % len(params)].t)
            ms_of["pipelined"] = (time.perf_counter() - t0) / repeats * 1e3
            e2e.result()
        ref = ms_of["eager fp32"]
        for m, ms in ms_of.items():
            print(f"{size:>6} {m:>16} {ms:9.2f} {BUDGET_MS / ms:10.2f} {ms / ref:13.3f}")
        if not cuda:
            print(f"{size:>6} {'fp16':>16} {'n/a':>9}  (CUDA only; the runner keeps float32 on a CPU)")
        for r in list(runners.values()) + [e2e] + ([peer] if peer else []):
            r.close()


if __name__ == "__main__":
    main()
