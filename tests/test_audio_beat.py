"""Tempo and beat tracking (engine/audio/beat.py through FeatureExtractor) on signals whose beats
are known: synthetic drum patterns at several tempi, the demo song, tempo changes, and steering."""

import numpy as np
import pytest

from engine.audio.beat import BeatTracker
from engine.audio.demo import demo_song, drum_track
from engine.audio.features import FeatureExtractor

SR = 44100
HOP = 512
WARMUP = 5.0        # seconds: scores count from here
TOLERANCE = 0.07    # seconds: a beat event within this of a true beat is a hit


def drums(bpm, seconds=20.0, seed=0, first=0.1):
    """Kick on every beat, snare on 2 and 4, hats on eighths; returns (mono float32, beat times)."""
    return drum_track(bpm, seconds, SR, seed=seed, first=first)


def run(x, fe=None, before_hop=None):
    """Feed ``x`` hop by hop. Returns hop end times, beat times, downbeat times, bpm per hop."""
    fe = fe or FeatureExtractor(SR, HOP)
    n = len(x) // HOP
    times = (np.arange(n) + 1) * HOP / SR
    beats, downbeats, bpm, phase = [], [], np.zeros(n), np.zeros(n)
    for i in range(n):
        if before_hop is not None:
            before_hop(i, fe)
        f = fe.process_hop(x[i * HOP:(i + 1) * HOP])
        if f["beat"] == 1.0:
            beats.append(times[i])
        if f["downbeat"] == 1.0:
            downbeats.append(times[i])
        bpm[i], phase[i] = f["bpm"], f["beat_phase"]
    return times, np.array(beats), np.array(downbeats), bpm, phase


def f_measure(detected, reference, tol=TOLERANCE):
    """Beat F-measure: one-to-one matching within ``tol`` seconds."""
    used = np.zeros(len(detected), bool)
    hits = 0
    for r in reference:
        d = np.abs(detected - r)
        d[used] = np.inf
        if d.size and d.min() <= tol:
            used[int(np.argmin(d))] = True
            hits += 1
    if hits == 0:
        return 0.0
    p, r = hits / len(detected), hits / len(reference)
    return 2 * p * r / (p + r)


def test_f_measure_can_fail():
    ref = np.arange(0, 10, 0.5)
    assert f_measure(ref + 0.01, ref) == 1.0
    assert f_measure(ref + 0.25, ref) == 0.0          # off-beat
    assert f_measure(np.arange(0, 10, 0.25), ref) == pytest.approx(2 / 3)  # double tempo


@pytest.mark.parametrize("bpm", [90.0, 120.0, 128.0, 150.0])
def test_tempo_and_beats_on_drum_patterns(bpm):
    x, true_beats = drums(bpm)
    times, beats, _, est, _ = run(x)
    after = times >= WARMUP
    assert np.all(np.abs(est[after] / bpm - 1.0) <= 0.04), (bpm, est[after].min(), est[after].max())
    sel = beats[beats >= WARMUP]
    ref = true_beats[true_beats >= WARMUP]
    assert f_measure(sel, ref) >= 0.8


def test_demo_song_tempo_beats_and_downbeats():
    y, sr, bpm = demo_song(seconds=45.0)
    # Start one beat into the song, so bar 1 does not begin at the first sample.
    skip = int(round(60.0 / bpm * sr))
    x = y[skip:].mean(axis=1).astype(np.float32)
    times, beats, downbeats, est, phase = run(x)
    after = times >= WARMUP
    assert np.all(np.abs(est[after] / bpm - 1.0) <= 0.04)
    true_beats = np.arange(1, 200) * 60.0 / bpm - skip / sr
    true_beats = true_beats[(true_beats >= WARMUP) & (true_beats < times[-1] - 0.3)]
    assert f_measure(beats[beats >= WARMUP], true_beats) >= 0.8
    # Downbeats: bar starts of the original song (every 4th beat from 0), after a few bars.
    bars = np.arange(0, 100) * 4 * 60.0 / bpm - skip / sr
    late = downbeats[downbeats >= 15.0]
    assert len(late) >= 5
    assert f_measure(late, bars[(bars >= 15.0) & (bars < times[-1] - 0.3)]) >= 0.8
    # beat_phase is 0 at the beat event and rises to ~1 just before the next.
    hop_of_beat = np.searchsorted(times, beats[beats >= WARMUP])
    assert np.all(phase[hop_of_beat] < 0.05)
    assert np.all(phase[hop_of_beat - 1] > 0.9)


def test_tempo_change_is_followed():
    a, beats_a = drums(120.0, 15.0)
    b, beats_b = drums(140.0, 15.0, seed=1, first=0.0)
    times, beats, _, est, _ = run(np.concatenate([a, b]))
    assert abs(est[np.searchsorted(times, 14.5)] / 120.0 - 1) <= 0.04
    late = times >= 15.0 + 8.0
    assert np.all(np.abs(est[late] / 140.0 - 1) <= 0.04)
    ref = beats_b + 15.0
    assert f_measure(beats[beats >= 23.0], ref[ref >= 23.0]) >= 0.8


def test_silence_and_noise_give_no_tempo_and_no_beats():
    rng = np.random.default_rng(0)
    for x in (np.zeros(SR * 6, np.float32), (rng.standard_normal(SR * 12) * 0.3).astype(np.float32)):
        _, beats, _, est, _ = run(x)
        assert est.max() == 0.0 and len(beats) == 0


def test_tap_tempo_sets_tempo_and_phase_in_silence():
    period = 60.0 / 100.0
    taps = [1.0 + k * period for k in range(4)]
    pending = list(taps)

    def tap(i, fe):
        now = fe.beat.now()
        while pending and pending[0] <= now:
            fe.beat.tap(pending.pop(0))

    times, beats, _, est, _ = run(np.zeros(SR * 8, np.float32), before_hop=tap)
    assert est[-1] == pytest.approx(100.0, rel=0.01)
    # Beats go on (freewheel) on the tapped grid after the last tap.
    grid = taps[-1] + period * np.arange(1, 12)
    grid = grid[grid < times[-1] - 0.1]
    assert f_measure(beats[beats > taps[-1] + 0.1], grid, tol=0.03) == 1.0


def test_taps_steer_the_tracker_to_another_metrical_level():
    # Music at 120; a VJ taps at half speed: the tracker stays near 60 instead of jumping back.
    x, _ = drums(120.0, 16.0)
    taps = list(0.1 + np.arange(8, 12) * 1.0)

    def tap(i, fe):
        while taps and taps[0] <= fe.beat.now():
            fe.beat.tap(taps.pop(0))

    times, _, _, est, _ = run(x, before_hop=tap)
    assert abs(est[times.searchsorted(6.0)] / 120 - 1) < 0.04
    assert np.all(np.abs(est[times >= 12.0] / 60.0 - 1) <= 0.06)


def test_set_tempo_and_lock_hold_against_the_music():
    x, _ = drums(128.0, 12.0)

    def steer(i, fe):
        if i == int(6.0 * SR / HOP):
            fe.beat.set_tempo(100.0)
            fe.beat.lock(True)

    times, beats, _, est, _ = run(x, before_hop=steer)
    late = times > 6.1
    assert np.all(est[late] == pytest.approx(100.0))
    intervals = np.diff(beats[beats > 6.1])
    assert np.allclose(intervals, 0.6, atol=HOP / SR + 1e-6)


def test_reset_phase_makes_the_next_hop_a_downbeat():
    x, _ = drums(120.0, 8.0)
    at = int(6.3 * SR / HOP)

    def steer(i, fe):
        if i == at:
            fe.beat.reset_phase()

    times, beats, downbeats, _, _ = run(x, before_hop=steer)
    assert times[at] in downbeats and times[at] in beats


def test_tracker_is_causal():
    x, _ = drums(120.0, 10.0)
    y = x.copy()
    y[int(7.0 * SR):] = np.random.default_rng(1).standard_normal(y.size - int(7.0 * SR)) * 0.5
    tx, bx, _, ex, px = run(x)
    ty, by, _, ey, py = run(y)
    cut = int(7.0 * SR) // HOP
    assert np.array_equal(ex[:cut], ey[:cut]) and np.array_equal(px[:cut], py[:cut])
    assert np.array_equal(bx[bx < tx[cut]], by[by < ty[cut]])
    assert not np.array_equal(ex, ey) or not np.array_equal(px, py)


def test_bad_arguments():
    with pytest.raises(ValueError):
        BeatTracker(0.0)
    with pytest.raises(ValueError):
        BeatTracker(86.0).set_tempo(float("nan"))
