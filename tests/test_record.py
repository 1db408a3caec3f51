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


# -- issue 17 item 11: sample rates AAC cannot open; renders that fail keep the earlier file ---


def decoded_audio(path):
    """(mono float samples, sample rate) of the file's audio stream, decoded with PyAV."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        parts = [f.to_ndarray().reshape(f.to_ndarray().shape[0], -1)[0] for f in c.decode(stream)]
        return np.concatenate(parts), stream.rate


def dominant_hz(x, sr):
    x = x[len(x) // 4: -len(x) // 4]          # away from the encoder's edges
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sr)[int(np.argmax(spec))]


def song(sr, seconds=1.0, hz=110.0):
    t = np.arange(int(sr * seconds)) / sr
    x = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.stack([x, x], axis=1)


@pytest.mark.parametrize("sr", [192000, 384000, 1000])
def test_audio_at_rates_aac_cannot_open_is_resampled(tmp_path, sr):
    """Before: ``avcodec_open2`` failed with EINVAL (22) at these rates, so nothing was written."""
    path = tmp_path / "out.mp4"
    with VideoWriter(path, (32, 32), 10, audio=(song(sr, 1.5), sr)) as w:
        for i in range(15):
            w.write(np.full((32, 32, 3), colour(i), np.uint8))
    info = probe(path)
    assert info["frames"] == 15 and info["has_audio"]
    assert info["audio_duration"] == pytest.approx(1.5, abs=0.1)
    x, rate = decoded_audio(path)
    assert rate in (48000, 44100)
    assert dominant_hz(x, rate) == pytest.approx(110.0, abs=3.0)   # the same tone, not noise
    assert 0.15 < np.abs(x[len(x) // 4: -len(x) // 4]).max() < 0.45  # at its level


def test_aac_rate_keeps_supported_rates_and_picks_simple_ratios():
    from engine.render.record import AAC_RATES, aac_rate

    assert all(aac_rate(r) == r for r in AAC_RATES)
    assert aac_rate(192000) == aac_rate(384000) == aac_rate(1000) == 48000
    assert aac_rate(176400) == aac_rate(352800) == 44100


@pytest.mark.parametrize("sr", [192000, 1000])
def test_lj_render_of_a_song_at_an_odd_rate_has_audio(tmp_path, sr):
    """The whole offline path (render_song: session, GL, writer) with a song at ``sr``."""
    from engine.offline import render_song

    out = tmp_path / "song.mp4"
    summary = render_song(song(sr, 1.0), sr, out, size=32, fps=10)
    assert summary["path"] == str(out) and summary["frames"] == 10
    info = probe(out)
    assert info["frames"] == 10 and info["has_audio"]
    assert info["audio_duration"] == pytest.approx(1.0, abs=0.1)
    x, rate = decoded_audio(out)
    assert dominant_hz(x, rate) == pytest.approx(110.0, abs=3.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.mp4"]   # no temp file left


class Boom(Exception):
    pass


def _fail_at(frame, exc):
    def progress(done, total):
        if done == frame:
            raise exc()
    return progress


def test_a_failed_render_keeps_the_earlier_file_and_leaves_no_temp(tmp_path):
    """Before: the output was opened (truncated) first, so a render that failed in the frame loop
    left a 0-byte or half-written file where the earlier render was."""
    from engine.offline import render_song

    out = tmp_path / "show.mp4"
    render_song(song(SR, 0.5), SR, out, size=32, fps=10)
    earlier = out.read_bytes()
    assert len(earlier) > 1000
    with pytest.raises(Boom):
        render_song(song(SR, 1.0, hz=440.0), SR, out, size=32, fps=10,
                    progress=_fail_at(3, Boom))
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["show.mp4"]
    # a render that finishes replaces it (the operator named the file)
    render_song(song(SR, 1.0), SR, out, size=32, fps=10)
    assert out.read_bytes() != earlier and probe(out)["frames"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["show.mp4"]


def test_a_render_that_cannot_start_names_the_output_and_writes_nothing(tmp_path):
    from engine.offline import render_song

    out = tmp_path / "keep.mp4"
    out.write_bytes(b"earlier render")
    (tmp_path / "bad.toml").write_text("[params\n")
    with pytest.raises(Exception, match="bad.toml"):
        render_song(song(SR, 0.5), SR, out, size=32, fps=10, mapping_path=tmp_path / "bad.toml")
    with pytest.raises(RenderError, match="keep.gif: unknown extension"):
        render_song(song(SR, 0.5), SR, tmp_path / "keep.gif", size=32, fps=10)
    assert out.read_bytes() == b"earlier render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "keep.mp4"]


def test_an_interrupted_render_keeps_its_part_but_never_over_an_earlier_render(tmp_path):
    """Ctrl-C keeps what was rendered, playable (test_faults does it through the CLI), at the
    named path when it is free; an earlier render there stays as it was, the part goes beside."""
    from engine.offline import render_song

    out = tmp_path / "cut.mp4"
    with pytest.raises(KeyboardInterrupt):
        render_song(song(SR, 2.0), SR, out, size=32, fps=10, progress=_fail_at(5, KeyboardInterrupt))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4"]
    assert 0 < probe(out)["frames"] < 20
    earlier = out.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        render_song(song(SR, 2.0), SR, out, size=32, fps=10, progress=_fail_at(5, KeyboardInterrupt))
    assert out.read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "cut.partial.mp4"]
    assert 0 < probe(tmp_path / "cut.partial.mp4")["frames"] < 20
