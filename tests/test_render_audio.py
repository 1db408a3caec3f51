"""Audio in shaders: ISF ``audio`` (waveform) and ``audioFFT`` (log spectrum) images and the
``lj_<feature>`` uniforms, fed through a real Session (the same analysis path as ``lj run``) to a
real Renderer on EGL, then read back: the pictures follow the sound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.render.audiotex import DB_RANGE, FMIN, AudioTextures, log_bin_matrix
from engine.render.context import headless_context
from engine.render.isf import load_isf
from engine.paths import SHADER_DIR
from engine.session import ArrayReader, Session

SR = 44100
N = 256  # the probe's spectrum width

PROBE = """/*{"DESCRIPTION": "writes the audio images to the screen: red = spectrum, green = waveform, blue = lj_bass",
    "INPUTS": [{"NAME": "inputImage", "TYPE": "image"},
               {"NAME": "spec", "TYPE": "audioFFT", "MAX": %d},
               {"NAME": "wave", "TYPE": "audio", "MAX": %d}]}*/
uniform float lj_bass;
void main() {
    vec2 uv = isf_FragNormCoord;
    gl_FragColor = vec4(IMG_NORM_PIXEL(spec, vec2(uv.x, 0.5)).r,
                        IMG_NORM_PIXEL(wave, vec2(uv.x, 0.5)).r, lj_bass, 1.0);
}
""" % (N, N)


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


def song():
    """1 s of silence, 1 s of 440 Hz, 1 s of 3 kHz, 1 s of a 60 Hz bass tone (all -6 dBFS)."""
    t = np.arange(SR) / SR
    parts = [np.zeros(SR), 0.5 * np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 3000 * t),
             0.5 * np.sin(2 * np.pi * 60 * t)]
    return np.concatenate(parts).astype(np.float32)


def expected_bin(hz, n=N):
    return n * math.log(hz / FMIN) / math.log((SR / 2) / FMIN)


@pytest.fixture
def session(ctx, tmp_path):
    (tmp_path / "probe.fs").write_text(PROBE)
    s = Session(SR, None, None, (32, 32), threaded=False)
    r = s.attach_renderer(ctx, (N, 8))
    r.shader_dir = tmp_path
    r.set_chain(["probe"])
    assert r.errors == [] and r.chain == ["probe"]
    assert r.audio_needs == {("audioFFT", N), ("audio", N)}
    yield s
    s.close()
    r.release()


def picture_at(session, reader, seconds):
    pos = int(seconds * SR)
    params = session.params_at(reader, pos)
    session.draw(np.zeros((32, 32, 3), np.uint8), params)
    return session.renderer.read()[4].astype(int)   # one row: [N, 3]


def test_spectrum_and_waveform_follow_the_audio(session):
    reader = ArrayReader(song())
    quiet = picture_at(session, reader, 0.5)
    assert quiet[:, 0].max() == 0                          # silence: no spectrum
    assert np.abs(quiet[:, 1] - 128).max() <= 1             # silence: waveform at 0.5
    for seconds, hz in ((1.5, 440), (2.5, 3000), (3.5, 60)):
        row = picture_at(session, reader, seconds)
        peak = int(np.argmax(row[:, 0]))
        assert abs(peak - expected_bin(hz)) <= 3, (hz, peak, expected_bin(hz))
        assert row[peak, 0] > 200                           # -6 dBFS sine: near the top
        off = np.arange(N) - expected_bin(hz)
        # (60 Hz is within two FFT bins of 0 Hz: a 2048-point FFT cannot separate them)
        far = (off > 30) | ((off < -30) if hz > 200 else False)
        assert row[far, 0].max() < row[peak, 0] - 60        # and not elsewhere
        wave = row[:, 1]   # the newest 256 samples: whole cycles above 172 Hz
        assert hz < 172 or wave.min() < 128 - 40 and wave.max() > 128 + 40   # a 0.5 sine swings ±0.25
    # the band uniform follows too: lj_bass is high on the bass tone, low on 3 kHz
    reader = ArrayReader(song())
    session.analysis = type(session.analysis)(SR)     # hear the song again from the start
    treble_tone = picture_at(session, reader, 2.9)[:, 2].mean()
    bass_tone = picture_at(session, reader, 3.9)[:, 2].mean()
    assert bass_tone > treble_tone + 30


def test_shipped_visualiser_loads_and_reacts(ctx):
    shader = load_isf(SHADER_DIR / "spectrum.fs")
    kinds = {i.type: i.max for i in shader.inputs}
    assert kinds["audioFFT"] == 128 and kinds["audio"] == 512
    s = Session(SR, None, None, (32, 32), threaded=False)
    r = s.attach_renderer(ctx, (64, 64))
    r.set_chain(["spectrum"])
    assert r.errors == []
    reader = ArrayReader(song())
    img = np.zeros((32, 32, 3), np.uint8)
    s.draw(img, s.params_at(reader, int(0.5 * SR)))
    silent = r.read().astype(int)
    s.draw(img, s.params_at(reader, int(1.5 * SR)))
    loud = r.read().astype(int)
    assert loud.sum() > silent.sum() + 64 * 255   # bars appear with the tone
    s.close()
    r.release()


def test_textures_are_not_computed_for_chains_without_audio(ctx):
    s = Session(SR, None, None, (32, 32), threaded=False)
    r = s.attach_renderer(ctx, (32, 32))
    r.set_chain(["rgb_shift"])
    assert r.audio_needs == set()
    assert r.feed_audio(np.ones(2048, np.float32), SR) is False
    s.close()
    r.release()


def test_pure_spectrum_scale():
    at = AudioTextures(SR)
    t = np.arange(2048) / SR
    at.update(np.sin(2 * np.pi * 1000 * t))          # full-scale sine
    spec = at.spectrum(512)
    assert spec.max() == pytest.approx(1.0, abs=0.03)
    at.update(0.01 * np.sin(2 * np.pi * 1000 * t))   # -40 dB
    assert at.spectrum(512).max() == pytest.approx(1 - 40 / DB_RANGE, abs=0.03)
    m = log_bin_matrix(512, 2048, SR)
    assert np.allclose(m.sum(axis=1), 1.0, atol=1e-5)  # every band is an average
    assert at.waveform(8).shape == (8,)
    assert AudioTextures.size(None) == 512 and AudioTextures.size(10**9) == 4096
