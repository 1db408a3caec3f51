"""Where a StyleGAN frame's device time goes: the kernels, grouped, with their share.

    python benchmarks/stylegan_profile.py [--arch sg2|sg3] [--sizes 512 1024] [--frames 10] [--rows 20]

The networks and inputs are those of ``stylegan_speed.py`` (StyleGAN2 config-f, or StyleGAN3-T
with ``--arch sg3``; random weights),
run through the runner as ``lj run`` runs a model on CUDA (float32 weights, the model's float16
blocks in float16) but eagerly, without the CUDA graph, so the profiler sees every kernel (a
graph replays the same kernels without the launch gaps). For each size it prints the summed
device time per frame next to the wall time of an eager frame and of a graph replay measured in
the same run, then the kernels that take the most device time. A diagnostic for speed work, not
a figure to record: the ratios in ``stylegan_speed.py`` are.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.generators.runner import GeneratorRunner  # noqa: E402

from stylegan_speed import ARCHS, _params  # noqa: E402


def _device_us(event) -> float:
    """An averaged profiler event's own device time, microseconds (the name changed in torch 2.4)."""
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0)


def _wall_ms(runner, params, n):
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        runner.generate(params[i % len(params)])
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=["sg2", "sg3"], default="sg2")
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--rows", type=int, default=20)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("needs CUDA (the profile is of the GPU path)")
        return 2
    from torch.profiler import ProfilerActivity, profile

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, {args.arch}")
    for size in args.sizes:
        build = ARCHS[args.arch]
        eager = GeneratorRunner(build(size), device="cuda", half=False, cuda_graph=False,
                                threaded=False)
        graph = GeneratorRunner(build(size), device="cuda", half=False, cuda_graph=True,
                                threaded=False)
        params = _params(eager.generator)
        for r in (eager, graph):
            for p in params[:3]:
                r.generate(p)
        wall_eager, wall_graph = _wall_ms(eager, params, 50), _wall_ms(graph, params, 50)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for i in range(args.frames):
                eager.generate(params[i % len(params)])
            torch.cuda.synchronize()
        # the kernels themselves (the aten ops that launched them report the same time again)
        events = [e for e in prof.key_averages()
                  if _device_us(e) > 0 and str(getattr(e, "device_type", "")).endswith("CUDA")]
        total = sum(_device_us(e) for e in events) / args.frames / 1e3
        print(f"\n{size}x{size}: device time {total:.2f} ms/frame; wall: eager {wall_eager:.2f} ms, "
              f"graph {wall_graph:.2f} ms; {len(events)} kinds of kernel")
        events.sort(key=_device_us, reverse=True)
        print(f"{'ms/frame':>9} {'share':>6} {'calls/frame':>11}  kernel")
        for e in events[:args.rows]:
            ms = _device_us(e) / args.frames / 1e3
            print(f"{ms:9.3f} {ms / total:6.1%} {e.count / args.frames:11.1f}  {e.key[:110]}")
        eager.close()
        graph.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
