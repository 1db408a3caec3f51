#!/usr/bin/env bash
# The GPU checks and benchmarks in one call, for a lent CUDA machine (the device tool's run):
#
#     bash benchmarks/gpu_run.sh [STEP...]  # logs to $OUT (or /tmp/lj-gpu); no STEP: all of them
#
# 1. tests/test_cuda.py: the runner's CUDA path (graphs, fp16, slots, NaN hold, resize), CUDA-GL
#    interop on EGL, StyleGAN3 against NVlabs' numbers and studio training steps, on the real GPU;
# 2. benchmarks/stylegan_speed.py: StyleGAN2 config-f at 256/512/1024 (eager fp32, mixed + graph,
#    fp16, fp16 + graph, end-to-end, pipelined), then StyleGAN3-T and the built-in generator;
# 3. benchmarks/studio_speed.py on CUDA: the 16x16 explore sheets and lj train's images/second,
#    64 px up to 256 px;
# 4. benchmarks/stylegan_profile.py: the kernels a config-f frame spends its device time in.
#
# Steps: cuda_tests sg2 studio sg3 cppn profile.
#
# Such a machine has torch but not all of the project's dependencies and cannot download: the
# missing wheels travel in .whl/ and the GL loader libraries in .gl/ (both ignored by git; see
# docs/benchmarks.md, "GPU", for how they were fetched). Each step has its own time limit, so one
# that hangs costs its limit and the others still run.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/lj-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".gl/*.deb" >/dev/null; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH="/tmp/site:$PWD"
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$vendor

{ nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,utilization.gpu \
      --format=csv; python3 -c 'import torch, numpy, moderngl; print("torch", torch.__version__,
      "cuda", torch.version.cuda, "numpy", numpy.__version__, "moderngl", moderngl.__version__)'
  nproc; uptime; } 2>&1 | tee "$OUT/machine.txt"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name ($(date +%T), limit ${limit}s): $*"
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? ($(date +%T))"
    tail -n 40 "$OUT/$name.log"
}

STEPS=" $* "
want() { [ "$STEPS" = "  " ] || [[ "$STEPS" == *" $1 "* ]]; }  # no STEP named: every step

want cuda_tests && step cuda_tests 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py
want sg2 && step sg2 150 python3 benchmarks/stylegan_speed.py --threads 8
want studio && step studio 150 python3 benchmarks/studio_speed.py --device cuda --threads 8 --train-res 128 256
want sg3 && step sg3 90 python3 benchmarks/stylegan_speed.py --arch sg3 --repeats 50 --threads 8
want cppn && step cppn 60 python3 benchmarks/stylegan_speed.py --arch cppn --sizes 512 1024 --repeats 100 --threads 8
want profile && step profile 90 python3 benchmarks/stylegan_profile.py --sizes 512 1024
true
