"""Frame upload paths on a real EGL context (Mesa llvmpipe): plain and PBO ping-pong, read back.

CUDA-GL interop cannot run here (no GPU); its fail-over to the PBO path is tested with a binding
that refuses to register, which is what a machine without interop does.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from engine.errors import RenderError
from engine.render.context import headless_context
from engine.render.gpu_upload import CudaGLUpload, FrameUpload, PboUpload, PlainUpload, make_uploader
from engine.render.pipeline import Renderer

SHADERS = Path(__file__).resolve().parent.parent / "shaders"


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def frames(h, w, n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("make", [PlainUpload, PboUpload])
def test_pixels_read_back_equal_the_uploaded_frame(ctx, make):
    r = Renderer(ctx, (40, 24), (40, 24), [], SHADERS)
    r.uploader = FrameUpload(make(ctx))
    for img in frames(24, 40, 5):  # several frames: both PBOs of the ping-pong are used twice
        r.render(img)
        assert np.array_equal(r.read(), img)
    if make is PboUpload:
        assert r.uploader.host.uploads == 5 and len(r.uploader.host._pbos) == 2
    r.release()


def test_bottom_up_buffers_handed_out_as_flipped_views_upload_without_a_copy(ctx):
    """The CUDA runner hands out ``pinned[::-1]``: its GL-order rows go up as they are."""
    up = PboUpload(ctx)
    r = Renderer(ctx, (32, 16), (32, 16), [], SHADERS)
    r.uploader = FrameUpload(up)
    img = frames(16, 32, 1, seed=3)[0]
    bottom_up = np.ascontiguousarray(img[::-1])
    view = bottom_up[::-1]
    r.render(view)
    assert np.array_equal(r.read(), img)
    assert up._staging is None, "a contiguous bottom-up buffer needs no staging copy"
    mirrored = img[:, ::-1]  # strided: goes through the staging buffer
    r.render(mirrored)
    assert up._staging is not None and np.array_equal(r.read(), mirrored)
    r.release()


@pytest.mark.parametrize("make", [PlainUpload, PboUpload])
def test_a_smaller_frame_is_upscaled_by_the_chain(ctx, make):
    """The resolution budget hands out smaller frames: they are shown at output size."""
    r = Renderer(ctx, (64, 64), (64, 64), [], SHADERS)
    r.uploader = FrameUpload(make(ctx))
    small = np.zeros((32, 32, 3), np.uint8)
    small[:16] = (255, 0, 0)      # top half red
    small[16:] = (0, 0, 255)      # bottom half blue
    r.render(small)
    out = r.read()
    assert out.shape == (64, 64, 3)
    assert np.array_equal(out[4, 32], [255, 0, 0]) and np.array_equal(out[60, 32], [0, 0, 255])
    r.render(frames(64, 64, 1)[0])  # back to full size: the renderer's own texture again
    assert np.array_equal(r.read(), frames(64, 64, 1)[0])
    r.release()


def test_bad_frames_are_a_render_error(ctx):
    up = FrameUpload(PboUpload(ctx))
    r = Renderer(ctx, (8, 8), (8, 8), [], SHADERS)
    r.uploader = up
    with pytest.raises(RenderError, match=r"uint8 \[h, w, 3\]"):
        r.render(np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(RenderError, match="uint8"):
        r.render(np.zeros((8, 8, 3), np.float32))
    r.release()


class _RefusingCudart:
    """A CUDA runtime binding on a machine where GL is not on the CUDA device."""

    class cudaGraphicsRegisterFlags:
        cudaGraphicsRegisterFlagsWriteDiscard = 2

    def cudaGraphicsGLRegisterImage(self, *args):
        return (999, None)  # cudaErrorUnknown-like: registration refused


def test_interop_refusal_is_reported_and_the_pbo_path_is_taken(ctx, caplog, monkeypatch):
    class FakeRunner:
        ops = object()

        class device:
            type = "cuda"

        handoff = "host"

        def set_handoff(self, mode):
            self.handoff = mode

    runner = FakeRunner()
    monkeypatch.setattr("engine.render.gpu_upload._import_cudart", lambda: _RefusingCudart())
    monkeypatch.setattr("torch.cuda.Stream", lambda device: None)
    with caplog.at_level(logging.INFO, "lj.render"):
        up = make_uploader(ctx, runner)
    assert up.path == "pbo" and runner.handoff == "host"
    assert sum("CUDA-GL interop not available" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(RuntimeError, match="cudaGraphicsGLRegisterImage failed"):
        CudaGLUpload(ctx, "cuda", cudart=_RefusingCudart())


def test_cpu_runner_gets_the_plain_path(ctx):
    class CpuRunner:
        ops = None
    assert make_uploader(ctx, CpuRunner()).path == "plain"
    assert make_uploader(ctx, CpuRunner(), mode="pbo").path == "pbo"
