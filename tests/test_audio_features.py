"""FeatureExtractor on synthetic signals whose answers are known."""

import numpy as np
import pytest

from engine.audio.features import FEATURE_NAMES, FeatureExtractor
from engine.audio.ring import HopReader, RingBuffer

SR = 44100
HOP = 512
N_FFT = 2048
# An event is "near" if detected between its start and one hop plus one window later.
DELAY = (HOP + N_FFT) / SR


def run(signal, sr=SR):
    """Feed ``signal`` hop by hop; return (hop end times in s, list of feature snapshots)."""
    fe = FeatureExtractor(sr, HOP, N_FFT)
    times, rows = [], []
    for i in range(len(signal) // HOP):
        f = fe.process_hop(signal[i * HOP:(i + 1) * HOP])
        times.append((i + 1) * HOP / sr)
        rows.append({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in f.items()})
    return np.array(times), rows


def events(times, rows, name):
    return np.array([t for t, r in zip(times, rows) if r[name] == 1.0])


def near(detected, starts, delay=DELAY):
    """For each start, whether some detection falls in [start, start + delay]."""
    return np.array([np.any((detected >= s) & (detected <= s + delay)) for s in starts])


def kick_train(seconds=4.0, period=0.5, first=0.25):
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    starts = np.arange(first, seconds - 0.3, period)
    t = np.arange(int(0.3 * SR)) / SR
    burst = (0.8 * np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.08)).astype(np.float32)
    for s in starts:
        i = int(s * SR)
        x[i:i + burst.size] += burst
    return x, starts


def hat_train(seconds=3.0, period=0.25, first=0.2, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros(int(seconds * SR), dtype=np.float32)
    starts = np.arange(first, seconds - 0.1, period)
    n = int(0.04 * SR)
    env = np.exp(-np.arange(n) / SR / 0.01)
    for s in starts:
        noise = np.diff(rng.standard_normal(n + 1))  # first difference: a high-pass
        i = int(s * SR)
        x[i:i + n] += (0.3 * noise * env).astype(np.float32)
    return x, starts


def all_finite(rows):
    for r in rows:
        for k, v in r.items():
            if not np.all(np.isfinite(v)):
                return False
    return True


def test_features_dict_is_stable_and_complete():
    fe = FeatureExtractor(SR)
    f1 = fe.process_hop(np.zeros(HOP, np.float32))
    chroma = f1["chroma"]
    f2 = fe.process_hop(np.ones(HOP, np.float32) * 0.1)
    assert f1 is f2 is fe.features
    assert f2["chroma"] is chroma and chroma.dtype == np.float32 and chroma.shape == (12,)
    assert set(FEATURE_NAMES) == set(f2)


def test_wrong_hop_length_is_rejected():
    with pytest.raises(ValueError):
        FeatureExtractor(SR).process_hop(np.zeros(HOP + 1, np.float32))


def test_silence_gives_no_onsets_and_no_nan():
    times, rows = run(np.zeros(SR * 2, np.float32))
    assert all_finite(rows)
    for name in ("onset", "onset_low", "onset_mid", "onset_high"):
        assert len(events(times, rows, name)) == 0
    last = rows[-1]
    assert last["loudness"] == -100.0 and last["level"] == 0.0 and last["rms"] == 0.0
    assert not last["chroma"].any()


def test_silence_after_sound_settles_without_nan_or_onsets():
    x, _ = kick_train(2.0)
    x = np.concatenate([x, np.zeros(SR * 3, np.float32)])
    times, rows = run(x)
    assert all_finite(rows)
    for name in ("onset", "onset_low", "onset_mid", "onset_high"):
        fired = events(times, rows, name)
        assert not np.any(fired > 2.1)
    assert rows[-1]["bass"] == 0.0 and rows[-1]["bass_level"] == 0.0


def test_nan_input_does_not_poison_the_state():
    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    x[1000] = np.nan
    x[5000] = np.inf
    times, rows = run(x)
    assert all_finite(rows)
    assert np.argmax(rows[-1]["chroma"]) == 9


def test_kick_train_gives_low_onsets_at_each_burst_and_no_hat_onsets():
    x, starts = kick_train()
    times, rows = run(x)
    low = events(times, rows, "onset_low")
    assert near(low, starts).all()
    assert len(low) <= len(starts) + 1
    assert len(events(times, rows, "onset_high")) <= 1


def test_hat_bursts_give_high_onsets_not_low():
    x, starts = hat_train()
    times, rows = run(x)
    high = events(times, rows, "onset_high")
    assert near(high, starts).mean() >= 0.9
    assert len(high) <= len(starts) + 1
    assert len(events(times, rows, "onset_low")) <= 1


def test_refractory_time_limits_onset_rate():
    # Noise clicks every 20 ms: far faster than the ~80 ms refractory time.
    x, _ = hat_train(seconds=2.0, period=0.02, first=0.1)
    times, rows = run(x)
    high = events(times, rows, "onset_high")
    assert len(high) >= 1
    assert np.all(np.diff(high) >= 0.06)


def test_a440_gives_chroma_a():
    t = np.arange(SR) / SR
    times, rows = run((0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    chroma = rows[-1]["chroma"]
    assert int(np.argmax(chroma)) == 9
    assert chroma.max() == pytest.approx(1.0)
    assert chroma[[0, 2, 4, 5, 7]].max() < 0.2


def test_c_major_triad_chroma():
    t = np.arange(SR) / SR
    x = sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * t) for m in (60, 64, 67)) * 0.2
    times, rows = run(x.astype(np.float32))
    top3 = set(np.argsort(rows[-1]["chroma"])[-3:].tolist())
    assert top3 == {0, 4, 7}


def test_highpassed_noise_is_treble_heavy_and_lowpassed_noise_bass_heavy():
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(SR * 3)
    spec = np.fft.rfft(noise)
    f = np.fft.rfftfreq(noise.size, 1 / SR)
    high = np.fft.irfft(spec * (f > 5000), n=noise.size).astype(np.float32) * 0.3
    low = np.fft.irfft(spec * (f < 200), n=noise.size).astype(np.float32) * 0.3
    _, rows = run(high)
    h = rows[-1]
    assert h["treb_level"] > h["bass_level"] + 0.3
    assert h["centroid"] > 0.75
    _, rows = run(low)
    lo = rows[-1]
    assert lo["bass_level"] > lo["treb_level"] + 0.3
    assert lo["centroid"] < h["centroid"] - 0.3


def test_flatness_separates_noise_from_a_tone():
    rng = np.random.default_rng(4)
    _, rows = run((0.2 * rng.standard_normal(SR)).astype(np.float32))
    noise_flatness = rows[-1]["flatness"]
    t = np.arange(SR) / SR
    _, rows = run((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert noise_flatness > 0.3
    assert rows[-1]["flatness"] < 0.01
    assert 0.0 <= rows[-1]["flatness"] <= 1.0


def test_band_ratios_centre_on_one_for_steady_sound_and_rise_on_hits():
    x, starts = kick_train(seconds=8.0)
    times, rows = run(x)
    bass = np.array([r["bass"] for r in rows])
    bass_att = np.array([r["bass_att"] for r in rows])
    late = times > 4.0
    hit = np.array([np.any((t >= starts) & (t <= starts + DELAY)) for t in times])
    assert bass[late & hit].mean() > 1.5
    assert bass[late & ~hit].mean() < 1.0
    # bass_att is the smoothed ratio: less spread than the raw ratio.
    assert bass_att[late].std() < bass[late].std()


def test_level_uses_the_full_range_for_quiet_and_loud_songs():
    x, _ = kick_train(seconds=8.0)
    peaks = []
    for gain in (1.0, 0.01):
        _, rows = run(x * gain)
        level = np.array([r["level"] for r in rows[len(rows) // 2:]])
        assert level.min() < 0.25
        peaks.append(level.max())
        loud = max(r["loudness"] for r in rows)
        assert -100.0 <= loud <= 0.0
    assert min(peaks) > 0.85
    assert abs(peaks[0] - peaks[1]) < 0.1


def test_flux_is_normalised():
    x, _ = hat_train()
    _, rows = run(x)
    for name in ("flux", "flux_low", "flux_mid", "flux_high"):
        v = np.array([r[name] for r in rows])
        assert v.min() >= 0.0 and v.max() <= 1.0
    assert max(r["flux_high"] for r in rows) == pytest.approx(1.0)


def test_features_depend_only_on_hop_content_not_on_read_chunking():
    """The frame loop reads the ring at irregular times; the hops and features must not care."""
    x, _ = kick_train(3.0)
    x = x + hat_train(3.0)[0]

    def through_ring(chunks):
        ring = RingBuffer(SR)
        reader = HopReader(ring, HOP)
        fe = FeatureExtractor(SR)
        out = []
        pos = 0
        for n in chunks:
            ring.write(x[pos:pos + n])
            pos += n
            for h in reader.hops():
                f = fe.process_hop(h)
                out.append([f[k] for k in FEATURE_NAMES[:-1]] + f["chroma"].tolist())
            if pos >= len(x):
                break
        return np.array(out)

    rng = np.random.default_rng(0)
    a = through_ring([SR // 60] * 1000)                           # 60 fps
    b = through_ring([SR // 24] * 1000)                           # 24 fps
    c = through_ring(rng.integers(1, 4000, size=10000).tolist())  # jittery
    n = min(len(a), len(b), len(c))
    assert n > 200
    np.testing.assert_array_equal(a[:n], b[:n])
    np.testing.assert_array_equal(a[:n], c[:n])


def test_smoothing_is_defined_in_seconds_not_hops():
    """bass_att released over the same time at two hop sizes."""
    x, _ = kick_train(seconds=3.0, period=10.0, first=1.0)  # one burst
    decay_times = []
    for hop in (256, 1024):
        fe = FeatureExtractor(SR, hop=hop, n_fft=2048)
        att = []
        for i in range(len(x) // hop):
            att.append(fe.process_hop(x[i * hop:(i + 1) * hop])["bass_att"])
        att = np.array(att)
        t = (np.arange(len(att)) + 1) * hop / SR
        peak = int(np.argmax(att))
        below = np.nonzero(att[peak:] < att[peak] / 2)[0]
        decay_times.append(t[peak + below[0]] - t[peak])
    assert decay_times[0] == pytest.approx(decay_times[1], rel=0.25)


# --- regression against a recording of the extractor before the per-hop speed-up ----------------
REFERENCE = __import__("pathlib").Path(__file__).parent / "data" / "features_demo_reference.npy"


def reference_signal():
    """12 s of the demo song (mono), one NaN and one inf sample, then 1 s of silence."""
    from engine.audio.demo import demo_song

    y, sr, _ = demo_song(seconds=12.0, sr=SR)
    x = np.ascontiguousarray(y.mean(axis=1), dtype=np.float32)
    x[SR * 5 + 123] = np.nan
    x[SR * 7 + 456] = np.inf
    return np.concatenate([x, np.zeros(SR, np.float32)])


#: The 28 scalar features the reference was recorded with (later features are tested on their own).
REFERENCE_NAMES = FEATURE_NAMES[:FEATURE_NAMES.index("downbeat") + 1]


def record_features(x):
    """The reference features of every hop of ``x`` as float64 [hops, 28 scalars + 12 chroma]."""
    fe = FeatureExtractor(SR, HOP, N_FFT)
    n = len(x) // HOP
    out = np.zeros((n, len(REFERENCE_NAMES) + 12), dtype=np.float64)
    for i in range(n):
        f = fe.process_hop(x[i * HOP:(i + 1) * HOP])
        out[i, :-12] = [f[k] for k in REFERENCE_NAMES]
        out[i, -12:] = f["chroma"]
    return out


def test_extractor_matches_the_recorded_reference_on_the_demo_song():
    """The optimised per-hop path reproduces the original extractor's output (within float32
    rounding) on every feature of every hop. ``tests/data/features_demo_reference.npy`` was
    recorded with ``record_features(reference_signal())`` from the code before the speed-up; its
    chroma columns were re-recorded when chroma moved to the standard (librosa) filter bank on the
    power spectrum, and its six tempo/beat columns (bpm .. downbeat) when the beat tracker's
    novelty became the log-band weighted flux and its phase fold eight beats long (audio2 branch);
    every other column unchanged."""
    ref = np.load(REFERENCE)
    got = record_features(reference_signal())
    assert got.shape == ref.shape
    assert ref[:, REFERENCE_NAMES.index("beat")].sum() > 10  # the tracker locked and fired beats
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)


def test_beat_tracker_autocorrelation_stays_exact_over_long_runs():
    """The tracker keeps its leaky autocorrelation as array * scale and folds the scale back in
    about once a minute; over 100 s it must match the plain recurrence (float64, in the test)."""
    from engine.audio.beat import BeatTracker

    rate = SR / HOP
    bt = BeatTracker(rate)
    rng = np.random.default_rng(1)
    n = int(100 * rate)
    period = 60.0 * rate / 123.0
    novelty = 0.05 * rng.random(n)
    novelty[(np.arange(n) % period) < 1.0] += 1.0    # a pulse every beat at 123 BPM
    mean, hist = 0.0, []
    acf = np.zeros(bt._L)
    for v in novelty:
        bt.update(float(v))
        mean += (v - mean) * bt._k_mean
        hist.append(max(v - mean, 0.0))
        recent = np.array(hist[-1:-bt._L - 1:-1])
        acf *= bt._acf_decay
        acf[:recent.size] += hist[-1] * recent
    got = bt._acf * bt._acf_scale
    np.testing.assert_allclose(got, acf, rtol=1e-4, atol=1e-6 * acf[0])
    assert bt.bpm == pytest.approx(123.0, rel=0.01)


def test_process_hops_matches_process_hop_hop_for_hop():
    """The batched path (spectra of up to BLOCK_HOPS hops at once) gives every feature of every
    hop as the per-hop path does, within float rounding, whatever the block sizes (including a
    block larger than BLOCK_HOPS, single hops through process_hop in between, partial hops left
    over, and NaN/inf samples in the input)."""
    from engine.audio.features import BLOCK_HOPS, SCALAR_FEATURES

    x = reference_signal()[:SR * 8]
    n = len(x) // HOP
    a = FeatureExtractor(SR, HOP, N_FFT)
    want = []
    for i in range(n):
        f = a.process_hop(x[i * HOP:(i + 1) * HOP])
        want.append([f[k] for k in SCALAR_FEATURES] + f["chroma"].tolist())
    b = FeatureExtractor(SR, HOP, N_FFT)
    got, pos = [], 0
    for size in [1, 3, BLOCK_HOPS, 0, 0, 0, BLOCK_HOPS * 3 + 5, 7, 0, 2] * 100:
        if pos >= n:
            break
        if size == 0:  # interleave the per-hop path (the two share their buffers)
            f = b.process_hop(x[pos * HOP:(pos + 1) * HOP])
            got.append([f[k] for k in SCALAR_FEATURES] + f["chroma"].tolist())
            pos += 1
            continue
        for f in b.process_hops(x[pos * HOP:(pos + size) * HOP]):
            got.append([f[k] for k in SCALAR_FEATURES] + f["chroma"].tolist())
        pos += size
    got = np.array(got)
    want = np.array(want)
    assert got.shape == want.shape and b.hops == n
    assert want[:, SCALAR_FEATURES.index("beat")].sum() > 5
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    # a trailing partial hop is ignored, not analysed
    assert list(FeatureExtractor(SR, HOP, N_FFT).process_hops(x[:HOP * 2 + 100])).__len__() == 2


@pytest.mark.parametrize("sr", [16000, 22050])
def test_low_sample_rates_where_nyquist_cuts_the_top_bands(sr):
    # the top log bands reach 16 kHz, above Nyquist here: they read 0, nothing indexes past the
    # spectrum (process_hop once did), and the single-hop and batched paths agree
    rng = np.random.default_rng(3)
    audio = (0.3 * rng.standard_normal(sr)).astype(np.float32)
    one, many = FeatureExtractor(sr), FeatureExtractor(sr)
    hop = one.hop
    rows_one = [dict(one.process_hop(audio[i * hop:(i + 1) * hop])) for i in range(len(audio) // hop)]
    rows_many = [dict(f) for f in many.process_hops(audio)]
    assert len(rows_one) == len(rows_many) > 0
    for a, b in zip(rows_one, rows_many):
        for name in ("band0", "band7", "level", "bass"):
            assert a[name] == pytest.approx(b[name], abs=1e-4), name


def check_warm_up_compiles_every_kernel_the_live_loop_uses():
    """After ``Analysis()`` (which calls ``warm_up``), a real show's hops and blocks — at another
    sample rate, through a real ring — compile nothing new: every numba kernel the live calls
    reach already has exactly their signatures, so no hop of a show waits for the compiler.
    (Kernels called only from other kernels are compiled into their callers and list none.)
    Run in a fresh process by the test below: in the suite's own process earlier tests have
    compiled the kernels already."""
    from numba.core.registry import CPUDispatcher

    from engine.audio import beat, levels, spectrum
    from engine.session import Analysis

    kernels = {f"{m.__name__}.{name}": obj for m in (beat, levels, spectrum)
               for name, obj in vars(m).items() if isinstance(obj, CPUDispatcher)}
    assert len(kernels) >= 4, kernels
    an = Analysis(48000)
    before = {name: list(k.signatures) for name, k in kernels.items()}

    class NoMapping:
        @staticmethod
        def step_hop(features, controls):
            pass

    ring = RingBuffer(48000 * 2)
    # 12 s of kicks at 120 BPM over noise: long enough for the tracker to find the tempo and
    # start folding the phase (its last kernel to run)
    x = (np.random.default_rng(5).standard_normal(48000 * 12) * 0.02).astype(np.float32)
    t = np.arange(2400) / 48000
    for start in range(0, len(x) - 2400, 24000):
        x[start:start + 2400] += (np.sin(2 * np.pi * 60 * t) * np.exp(-t * 40)).astype(np.float32)
    for i in range(0, len(x), 800):                 # one 60 fps frame of audio at a time
        ring.write(x[i:i + 800])
        an.advance(ring, i + 800, NoMapping, {})
    assert an.hops == len(x) // 512
    assert abs(an.features["bpm"] - 120) < 3            # the fold has run
    after = {name: list(k.signatures) for name, k in kernels.items()}
    assert after == before                               # nothing compiled during the "show"
    used = {name for name, sigs in after.items() if sigs}
    assert {"engine.audio.beat._fold", "engine.audio.beat._push", "engine.audio.spectrum.frame_block",
            "engine.audio.spectrum.spectrum_sums",
            "engine.audio.levels.step_levels"} <= used, used


def test_warm_up_compiles_every_kernel_the_live_loop_uses():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    code = ("import sys; sys.path.insert(0, 'tests'); import test_audio_features as t; "
            "t.check_warm_up_compiles_every_kernel_the_live_loop_uses(); print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
