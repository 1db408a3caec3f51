"""VideoWriter and probe with real PyAV encoding (H.264 + AAC) and decoding."""

from __future__ import annotations

import av
import numpy as np
import pytest

from engine.errors import RenderError
from engine.render.record import VideoWriter, probe

SR = 44100


def tone(seconds=1.0, hz=440.0):
    t = np.arange(int(SR * seconds)) / SR
    x = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([x, x], axis=1)


def colour(i):
    return ((i * 8) % 256, 255 - (i * 8) % 256, 64)


def test_video_with_audio_round_trip(tmp_path):
    path = tmp_path / "out.mp4"
    with VideoWriter(path, (64, 48), 30, audio=(tone(), SR)) as w:
        for i in range(30):
            w.write(np.full((48, 64, 3), colour(i), np.uint8))
        assert w.frames_written == 30
    info = probe(path)
    assert info["frames"] == 30
    assert (info["width"], info["height"]) == (64, 48)
    assert info["duration"] == pytest.approx(1.0, abs=0.05)
    assert info["fps"] == pytest.approx(30.0)
    assert info["has_audio"] is True
    assert info["audio_duration"] == pytest.approx(1.0, abs=0.06)
    with av.open(str(path)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(first[24, 32].astype(int) - colour(0)).max() <= 6


def test_odd_size_padded_and_mkv_without_audio(tmp_path):
    path = tmp_path / "odd.mkv"
    w = VideoWriter(path, (63, 47), 24)
    frame = np.full((47, 63, 3), (40, 200, 90), np.uint8)
    for _ in range(12):
        w.write(frame)
    w.close()
    w.close()  # idempotent
    info = probe(path)
    assert info["frames"] == 12 and (info["width"], info["height"]) == (64, 48)
    assert info["has_audio"] is False and info["audio_duration"] == 0.0
    with av.open(str(path)) as c:
        img = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(img[47, 63].astype(int) - (40, 200, 90)).max() <= 8   # padding repeats edge


def test_write_copies_frame(tmp_path):
    path = tmp_path / "copy.mp4"
    buf = np.zeros((48, 64, 3), np.uint8)
    with VideoWriter(path, (64, 48), 30) as w:
        for v in (250, 10):
            buf[:] = v
            w.write(buf)
        buf[:] = 128                                   # caller reuses its buffer at once
    with av.open(str(path)) as c:
        means = [f.to_ndarray(format="rgb24").mean() for f in c.decode(video=0)]
    assert means[0] > 240 and means[1] < 20


def test_unwritable_path(tmp_path):
    with pytest.raises(RenderError) as e:
        VideoWriter(tmp_path / "no" / "such" / "dir.mp4", (64, 48), 30)
    assert "dir.mp4" in str(e.value) and "\n" not in str(e.value)
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "x.mp4").mkdir()                         # a directory where the file should go
    with pytest.raises(RenderError, match="x.mp4"):
        VideoWriter(locked / "x.mp4", (64, 48), 30)
    with pytest.raises(RenderError, match="extension"):
        VideoWriter(tmp_path / "x.avi", (64, 48), 30)


def test_encoder_error_surfaces_naming_file(tmp_path):
    path = tmp_path / "bad.mp4"
    w = VideoWriter(path, (64, 48), 30, preset="no-such-preset")
    with pytest.raises(RenderError) as e:
        for _ in range(50):
            w.write(np.zeros((48, 64, 3), np.uint8))
        w.close()
    assert "bad.mp4" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(RenderError):
        w.close()


def test_wrong_frame_shape(tmp_path):
    w = VideoWriter(tmp_path / "s.mp4", (64, 48), 30)
    with pytest.raises(RenderError, match=r"\[48, 64, 3\]"):
        w.write(np.zeros((48, 63, 3), np.uint8))
    w.close()
