"""Frames out to other apps: NDI sent and received on loopback through the real NDI runtime
(cyndilib), the virtual-camera frame path up to a real file descriptor (no v4l2loopback device
can exist in this container), the device checks on real non-V4L2 files, Syphon/Spout reporting
the missing platform, and the live loop with outputs."""

from __future__ import annotations

import os
import sys
import time
from fractions import Fraction

import numpy as np
import pytest

from engine.render.context import headless_context
from engine.render.outputs import (OutputError, Outputs, V4l2Output, YuyvWriter, open_output,
                                   parse_output, rgb_to_yuyv, yuyv_to_rgb)
from engine.render.pipeline import Renderer
from support import wait_for


def picture(w=64, h=32):
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = x * 255 // (w - 1)
    img[..., 1] = y * 255 // (h - 1)
    img[..., 2] = 90
    return img


def test_parse_output():
    assert parse_output("ndi:LJ Main") == ("ndi", "LJ Main")
    assert parse_output("v4l2:/dev/video10") == ("v4l2", "/dev/video10")
    for bad in ("ndi", "ndi:", "hdmi:1", "/dev/video10"):
        with pytest.raises(OutputError, match="not understood"):
            parse_output(bad)


@pytest.mark.skipif(sys.platform == "darwin", reason="Syphon exists on macOS")
def test_syphon_reports_the_missing_platform():
    with pytest.raises(OutputError, match=r"Syphon is macOS only \(this is linux\); use ndi:x"):
        open_output("syphon:x", (64, 32))


@pytest.mark.skipif(sys.platform == "win32", reason="Spout exists on Windows")
def test_spout_reports_the_missing_platform():
    with pytest.raises(OutputError, match=r"Spout is Windows only .*use ndi:x"):
        open_output("spout:x", (64, 32))


def test_yuyv_round_trip_is_close():
    img = picture()
    back = yuyv_to_rgb(rgb_to_yuyv(img), 64, 32)
    # 4:2:2 halves the colour resolution: compare luma exactly-ish and colour on flat areas
    assert np.abs(back.astype(int) - img).mean() < 3
    flat = np.full((8, 8, 3), (200, 40, 120), np.uint8)
    assert np.abs(yuyv_to_rgb(rgb_to_yuyv(flat), 8, 8).astype(int) - flat).max() <= 2


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def test_virtual_camera_frame_path_through_a_real_fd(ctx):
    """Renderer → read back → YUYV → write(2) to a pipe: exactly what goes to /dev/videoN."""
    r = Renderer(ctx, (64, 32), (64, 32), ["vignette"], "shaders")
    img = picture()
    r.render(img, {"vignette.amount": 0.0})
    shown = r.read()
    rfd, wfd = os.pipe()
    try:
        writer = YuyvWriter(wfd, (64, 32), name="pipe")
        assert writer.send(r)
        frame = b""
        while len(frame) < 64 * 32 * 2:
            frame += os.read(rfd, 64 * 32 * 2 - len(frame))
        writer.close()
        assert writer.sent == 1 and writer.error is None
        seen = yuyv_to_rgb(frame, 64, 32)
        assert np.abs(seen.astype(int) - shown).mean() < 3
    finally:
        os.close(rfd)
        os.close(wfd)
        r.release()


def test_a_busy_writer_skips_frames_instead_of_waiting(ctx):
    """Nobody reads the pipe: the writer thread blocks in write(2) once the pipe is full; the
    frame loop's sends keep returning at once and count what they skip."""
    rfd, wfd = os.pipe()
    try:
        writer = YuyvWriter(wfd, (512, 512), name="stuck pipe")
        img = np.zeros((512, 512, 3), np.uint8)
        for _ in range(20):
            writer.send(img)
        wait_for(lambda: writer.dropped > 0, "frames skipped")
        assert writer.dropped >= 15
    finally:
        os.close(rfd)          # the blocked write fails; the writer thread ends
        writer.close()
        os.close(wfd)


def test_v4l2_checks_the_device(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    with pytest.raises(OutputError, match=r"cannot open virtual camera /dev/video77.*modprobe v4l2loopback"):
        V4l2Output("/dev/video77", (64, 32))
    plain = tmp_path / "video0"
    plain.write_bytes(b"")
    with pytest.raises(OutputError, match="is not a video device"):
        V4l2Output(str(plain), (64, 32))
    with pytest.raises(OutputError, match=r"/dev/null is not a V4L2 device"):
        V4l2Output("/dev/null", (64, 32))     # a real character device, but not V4L2


def _ndi_available():
    try:
        import cyndilib  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture
def ndi_loopback(tmp_path, monkeypatch):
    """Point NDI's discovery at 127.0.0.1 (there is no mDNS in a container)."""
    if not _ndi_available():
        pytest.skip("cyndilib is not installed (pip install 'latent-jockey[ndi]')")
    (tmp_path / "ndi-config.v1.json").write_text(
        '{"ndi": {"networks": {"ips": "127.0.0.1", "discovery": ""}}}')
    monkeypatch.setenv("NDI_CONFIG_DIR", str(tmp_path))


def test_ndi_send_and_receive_on_loopback(ctx, ndi_loopback):
    from cyndilib.finder import Finder
    from cyndilib.receiver import Receiver, ReceiveFrameType
    from cyndilib.video_frame import VideoRecvFrame
    from cyndilib.wrapper.ndi_recv import RecvBandwidth, RecvColorFormat

    name = f"lj-test-{os.getpid()}"
    r = Renderer(ctx, (64, 32), (64, 32), [], "shaders")
    img = picture()
    r.render(img)
    out = open_output(f"ndi:{name}", (64, 32), fps=30)
    finder = Finder()
    finder.open()
    receiver = None
    try:
        source = None
        deadline = time.monotonic() + 20
        while source is None and time.monotonic() < deadline:
            finder.wait_for_sources(0.5)
            for n in finder.get_source_names():
                if n.endswith(f"({name})"):
                    source = finder.get_source(n)
        assert source is not None, f"NDI source {name} not found: {finder.get_source_names()}"
        receiver = Receiver(color_format=RecvColorFormat.RGBX_RGBA,
                            bandwidth=RecvBandwidth.highest)
        frame = VideoRecvFrame()
        receiver.set_video_frame(frame)
        receiver.set_source(source)
        got = None
        deadline = time.monotonic() + 20
        while got is None and time.monotonic() < deadline:
            out.send(r)
            res = receiver.receive(ReceiveFrameType.recv_video, 100)
            if res & ReceiveFrameType.recv_video:
                got = np.asarray(frame).reshape(32, 64, 4)[..., :3].copy()
        assert got is not None, "no NDI frame received"
        assert frame.get_resolution() == (64, 32)
        assert out.connections(2.0) >= 1
        # NDI compresses (SpeedHQ): close, not exact
        assert np.abs(got.astype(int) - img).mean() < 8
        # the sender's thread counts a frame after NDI took it, which can be after it arrived
        wait_for(lambda: out.sent >= 1, "the output counting a sent frame")
        assert out.error is None
    finally:
        if receiver is not None:
            receiver.disconnect()
        finder.close()
        out.close()
        r.release()


def test_ndi_missing_library_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "cyndilib", None)          # as if not installed
    monkeypatch.setitem(sys.modules, "cyndilib.sender", None)
    with pytest.raises(OutputError, match=r"pip install 'latent-jockey\[ndi\]'"):
        open_output("ndi:x", (64, 32))


def test_live_loop_with_an_output_and_a_bad_one(tmp_path):
    from engine.errors import LJError
    from engine.live import LiveOptions, StopFlag, run_live
    from support import PacedSource

    sr = 44100
    src = PacedSource(np.zeros((sr * 3, 2), np.float32), sr)
    opts = LiveOptions(size=32, osc_port=None, headless=True, max_frames=3, watch=False,
                       outputs=["spout:x"])
    with pytest.raises(LJError, match="Spout"):
        run_live(src, opts, StopFlag())
    outs = Outputs([], (32, 32))
    assert outs.sinks == []


def test_an_output_that_fails_while_running_is_dropped_with_one_message(caplog):
    import logging

    rfd, wfd = os.pipe()
    os.close(rfd)                                    # the receiving app went away
    outs = Outputs([], (16, 16))
    outs.sinks.append(YuyvWriter(wfd, (16, 16), name="gone"))
    img = np.zeros((16, 16, 3), np.uint8)
    with caplog.at_level(logging.ERROR, logger="lj.output"):
        outs.frame(img)
        wait_for(lambda: outs.sinks[0].failed, "the write to fail")
        for _ in range(5):
            outs.frame(img)                          # the show goes on
    assert outs.sinks == []
    assert caplog.text.count("output stopped: v4l2:gone") == 1
    os.close(wfd)
