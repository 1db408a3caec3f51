"""The wiring: live and offline agree, reloads keep the show going, shader targets are checked."""

import time

import numpy as np
import pytest

from engine.audio.demo import demo_song
from engine.audio.ring import RingBuffer
from engine.errors import MappingError
from engine.session import ArrayReader, Session, check_uniform_targets, chain_inputs, to_mono
from engine.paths import DEFAULT_MAPPING, SHADER_DIR
from support import SMALL_MAPPING

SIZE = (32, 32)


@pytest.fixture(scope="module")
def song():
    samples, sr, _ = demo_song(seconds=6.0)
    return samples, sr


def test_live_and_offline_compute_identical_frames(song):
    """A ring fed in irregular blocks (as a sound card does) gives the frames an array gives."""
    samples, sr = song
    mono = to_mono(samples)
    offline = Session(sr, size=SIZE, threaded=False)
    live = Session(sr, size=SIZE, threaded=False)
    ring = RingBuffer(sr * 2)
    rng = np.random.default_rng(1)
    written = 0
    positions = []
    try:
        while written < len(mono):
            block = int(rng.integers(64, 2000))
            ring.write(mono[written:written + block])
            written = min(len(mono), written + block)
            positions.append(written)
        # replay: the live session sees each position as the ring reached it
        ring2 = RingBuffer(sr * 2)
        written = 0
        checked = 0
        for pos in positions:
            ring2.write(mono[written:pos])
            written = pos
            a = live.params_at(ring2, pos)
            b = offline.params_at(ArrayReader(mono), pos)
            assert a.t == b.t
            np.testing.assert_array_equal(a.w_plus, b.w_plus)
            assert a.truncation == b.truncation and a.noise == b.noise
            assert a.uniforms == b.uniforms
            checked += 1
        assert checked > 50
        assert live.analysis.dropped_hops == 0
    finally:
        live.close()
        offline.close()


def test_the_default_mapping_is_music_driven(song):
    """Kicks push, the walk drifts: frames differ in time, and silence differs from music."""
    samples, sr = song
    mono = to_mono(samples)
    music = Session(sr, size=SIZE, threaded=False)
    quiet = Session(sr, size=SIZE, threaded=False)
    silence = ArrayReader(np.zeros_like(mono))
    try:
        pos = [int(sr * t) for t in np.arange(0.5, 6.0, 0.25)]
        m = [music.params_at(ArrayReader(mono), p) for p in pos]
        q = [quiet.params_at(silence, p) for p in pos]
        assert np.abs(m[-1].w_plus - m[0].w_plus).mean() > 0.05, "the walk drifts"
        diffs = [np.abs(a.w_plus - b.w_plus).mean() for a, b in zip(m, q)]
        assert max(diffs) > 0.05, "music moves the latent away from what silence gives"
        amounts = {round(p.uniforms["feedback.amount"], 4) for p in m}
        assert len(amounts) > 3, "the feedback amount follows the music"
    finally:
        music.close()
        quiet.close()


def write(path, text):
    path.write_text(text)
    return path


GOOD = "\n" + SMALL_MAPPING  # a leading blank line: "from" is line 10, "to" line 11


def wait_reload(session, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if session._pending_mapping is not None:
            return session.apply_reload()
        time.sleep(0.01)
    raise AssertionError("the loader never finished")


def test_reload_swaps_good_files_and_keeps_the_last_good_one(tmp_path, song):
    samples, sr = song
    path = write(tmp_path / "m.toml", GOOD.format(name="one"))
    s = Session(sr, path, size=SIZE, threaded=False)
    reader = ArrayReader(to_mono(samples))
    try:
        s.params_at(reader, sr * 3)
        position = s.mapping.state()
        write(path, GOOD.format(name="two").replace("level", "levle"))
        s.request_reload(path)
        assert wait_reload(s) is False
        assert s.mapping.name == "one"
        assert "m.toml:10" in s.last_error and "levle" in s.last_error
        write(path, GOOD.format(name="two"))
        s.request_reload(path)
        assert wait_reload(s) is True
        assert s.mapping.name == "two" and s.last_error is None
        assert s.mapping.state()["position"] == pytest.approx(position["position"])
        s.request_reload(tmp_path / "gone.toml")
        assert wait_reload(s) is False and "gone.toml" in s.last_error
        assert s.mapping.name == "two"
    finally:
        s.close()


def test_shader_targets_are_checked_against_the_chain(tmp_path):
    path = write(tmp_path / "m.toml", GOOD.format(name="x").replace(
        "shader.feedback.amount", "shader.feedback.amont"))
    s = Session(44100, path, size=SIZE, threaded=False)
    try:
        with pytest.raises(MappingError) as err:
            check_uniform_targets(s.mapping, chain_inputs(s.mapping.shader_chain, SHADER_DIR))
        assert "m.toml:11" in str(err.value) and "feedback.amont" in str(err.value)
    finally:
        s.close()
    default = Session(44100, DEFAULT_MAPPING, size=SIZE, threaded=False)
    try:
        check_uniform_targets(default.mapping, chain_inputs(default.mapping.shader_chain, SHADER_DIR))
    finally:
        default.close()


def test_a_reload_asked_for_during_another_is_not_lost(tmp_path, song):
    samples, sr = song
    first = write(tmp_path / "a.toml", GOOD.format(name="a"))
    second = write(tmp_path / "b.toml", GOOD.format(name="b"))
    s = Session(sr, first, size=SIZE, threaded=False)
    try:
        s.request_reload(first)
        s.request_reload(second)  # arrives while the first is (or may be) compiling
        deadline = time.monotonic() + 20
        while s.mapping.name != "b" and time.monotonic() < deadline:
            s.apply_reload()
            time.sleep(0.01)
        assert s.mapping.name == "b"
    finally:
        s.close()


def test_the_tempo_tracker_drives_a_mapping(tmp_path):
    """The tracker's features are mapping sources: beats pulse a uniform, bpm reads the tempo."""
    samples, sr, bpm = demo_song(seconds=10.0)
    path = write(tmp_path / "beat.toml", GOOD.format(name="beat").replace(
        'from = "level"', 'from = "beat"\nenvelope = { attack_ms = 5, release_ms = 150 }'))
    s = Session(sr, path, size=SIZE, threaded=False)
    reader = ArrayReader(to_mono(samples))
    try:
        amounts = [s.params_at(reader, int(sr * t)).uniforms["feedback.amount"]
                   for t in np.arange(5.0, 10.0, 0.02)]
        assert s.analysis.features["bpm"] == pytest.approx(bpm, rel=0.04)
        assert max(amounts) > 0.6 and min(amounts) < 0.2, "every beat is a pulse"
        peaks = sum(1 for a, b in zip(amounts, amounts[1:]) if a < 0.5 <= b)
        assert abs(peaks - 5.0 * bpm / 60) <= 2, f"{peaks} pulses in 5 s at {bpm} BPM"
    finally:
        s.close()


def test_frame_stats_stay_bounded_for_weeks_long_shows():
    from engine.session import FrameStats

    stats = FrameStats()
    stats.KEEP = 1000
    for i in range(25_000):
        stats.add(0.01, 0.004)
    assert stats.frames == 25_000
    assert len(stats.frame_times) <= 2000 and len(stats.gen_times) <= 2000
    assert stats.mean_fps() == pytest.approx(100.0)
    assert stats.fps() == pytest.approx(100.0)


def test_a_stalled_loop_skips_the_hops_the_ring_no_longer_holds(song):
    samples, sr = song
    mono = to_mono(samples)
    ring = RingBuffer(8 * 512)
    s = Session(sr, size=SIZE, threaded=False)
    try:
        ring.write(mono[:4096])
        s.params_at(ring, ring.total_written)
        assert s.analysis.hops == 8 and s.analysis.dropped_hops == 0
        ring.write(mono[4096:4096 + 20 * 512])   # the loop stalled for 20 hops; the ring holds 8
        s.params_at(ring, ring.total_written)
        assert s.analysis.hops == 28 and s.analysis.dropped_hops == 12
    finally:
        s.close()
