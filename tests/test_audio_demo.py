"""The demo song: deterministic, the right shape, and its kicks are found by the extractor."""

import numpy as np
import pytest
import soundfile as sf

from engine.audio.demo import demo_sections, demo_song, write_demo_wav
from engine.audio.features import FeatureExtractor

HOP, N_FFT = 512, 2048


@pytest.fixture(scope="module")
def song():
    return demo_song(30.0)


def test_shape_range_and_tempo(song):
    x, sr, bpm = song
    assert sr == 44100 and x.dtype == np.float32
    assert x.shape == (30 * 44100, 2)
    assert np.isfinite(x).all()
    assert np.abs(x).max() == pytest.approx(0.9, abs=1e-3)
    assert 120 <= bpm <= 128
    assert not np.array_equal(x[:, 0], x[:, 1])  # actually stereo


def test_same_seed_same_song_other_seed_other_song(song):
    x, _, _ = song
    again, _, _ = demo_song(30.0)
    assert np.array_equal(x, again)
    other, _, _ = demo_song(30.0, seed=1)
    assert not np.array_equal(x, other)


def test_length_and_rate_follow_the_arguments():
    x, sr, _ = demo_song(3.3, sr=22050)
    assert sr == 22050 and x.shape == (round(3.3 * 22050), 2)
    with pytest.raises(ValueError):
        demo_song(0)


def test_sections_cover_the_song_in_order():
    secs = demo_sections(30.0)
    names = [s[0] for s in secs]
    assert names[:4] == ["intro", "build", "drop", "breakdown"]
    assert secs[0][1] == 0.0 and secs[-1][2] == pytest.approx(30.0)
    for (_, _, end), (_, start, _) in zip(secs, secs[1:]):
        assert end == pytest.approx(start)


def analyse(x, sr):
    mono = x.mean(axis=1)
    fe = FeatureExtractor(sr, HOP, N_FFT)
    rows = []
    for i in range(len(mono) // HOP):
        f = fe.process_hop(mono[i * HOP:(i + 1) * HOP])
        rows.append(((i + 1) * HOP / sr, f["onset_low"], f["rms"], int(np.argmax(f["chroma"]))))
    return rows


def test_extractor_finds_the_kicks_on_the_beats(song):
    x, sr, bpm = song
    rows = analyse(x, sr)
    onsets = np.array([t for t, o, _, _ in rows if o])
    beats = np.arange(0, 30.0, 60.0 / bpm)
    kick_beats = [b for b in beats
                  if not any(n == "breakdown" and s <= b < e for n, s, e in demo_sections(30.0))]
    delay = (HOP + N_FFT) / sr
    found = [np.any((onsets >= b) & (onsets <= b + delay)) for b in kick_beats]
    assert np.mean(found) >= 0.9
    on_beat = [np.any((o >= beats) & (o <= beats + delay)) for o in onsets]
    assert np.mean(on_beat) >= 0.7


def test_sections_differ_in_energy_and_chords_move(song):
    x, sr, _ = song
    rows = analyse(x, sr)
    secs = {n: (s, e) for n, s, e in reversed(demo_sections(30.0))}  # first of each name
    rms = {n: np.mean([r for t, _, r, _ in rows if s <= t < e]) for n, (s, e) in secs.items()}
    assert rms["drop"] > rms["breakdown"]
    assert rms["drop"] > rms["intro"]
    # The chroma peak changes with the chord: several pitch classes win over the song.
    winners = [c for t, _, r, c in rows if r > 0.01]
    counts = np.bincount(winners, minlength=12)
    assert (counts > len(winners) * 0.05).sum() >= 3


def test_write_demo_wav(tmp_path):
    path = write_demo_wav(tmp_path / "demo.wav", seconds=2.0)
    data, sr = sf.read(str(path), dtype="float32")
    assert sr == 44100 and data.shape == (88200, 2)
    assert np.abs(data - demo_song(2.0)[0]).max() < 1e-4
