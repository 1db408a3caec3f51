"""Sources against real parts: files on disk, and a real PulseAudio server with a null sink.

The live tests play into the ``pulse_sink`` null sink (tests/conftest.py) and capture its
monitor, which the fixture makes the default input.
"""

import logging
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from engine.audio.sources import FilePlayer, LiveInput, list_devices, load_audio
from engine.errors import AudioError
from support import capture_device, wait_for


# --- helpers -------------------------------------------------------------------------------------



def read_ring(ring, start, stop):
    out = np.zeros(stop - start, dtype=np.float32)
    assert ring.read(start, out), "ring no longer holds the samples"
    return out


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def dominant_hz(x, sr):
    n = 1 << 16
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size), n=n))
    return float(np.argmax(spec) * sr / n)


def loudest(x, sr, seconds=0.2):
    """The loudest ``seconds`` long stretch of ``x`` (hop 10 ms)."""
    n, step = int(seconds * sr), int(0.01 * sr)
    best = max(range(0, max(1, x.size - n), step), key=lambda i: rms(x[i:i + n]))
    return x[best:best + n]



def start_capture(pulse_sink, monkeypatch):
    # The fixture made our sink's monitor the default source; PULSE_SOURCE pins this process's
    # streams to it even if a test running beside us changes the server-wide default.
    monkeypatch.setenv("PULSE_SOURCE", pulse_sink["monitor"])
    live = LiveInput(device=capture_device())
    live.start()
    # PulseAudio can take a moment before the first block arrives.
    wait_for(lambda: live.position >= live.sample_rate // 4, "the capture to start", timeout=8.0)
    return live


# --- files ---------------------------------------------------------------------------------------

def test_load_audio_round_trip(tmp_path):
    x = np.stack([np.linspace(-0.5, 0.5, 1000), np.zeros(1000)], axis=1).astype(np.float32)
    sf.write(str(tmp_path / "a.flac"), x, 22050)
    data, sr = load_audio(tmp_path / "a.flac")
    assert sr == 22050 and data.dtype == np.float32 and data.shape == (1000, 2)
    assert np.abs(data - x).max() < 1e-3
    sf.write(str(tmp_path / "m.wav"), x[:, 0], 8000)
    data, sr = load_audio(str(tmp_path / "m.wav"))
    assert sr == 8000 and data.shape == (1000, 1)


@pytest.mark.parametrize("kind", ["missing", "garbage", "empty", "directory"])
def test_load_audio_errors_are_one_line_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.wav"
    if kind == "garbage":
        path.write_bytes(b"this is not audio\n" * 50)
    elif kind == "empty":
        sf.write(str(path), np.zeros((0, 2), np.float32), 44100)
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(AudioError) as info:
        load_audio(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg


# --- without a sound card ------------------------------------------------------------------------

def test_file_player_without_portaudio_is_paced_by_the_clock(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # as on a machine without it
    sr = 8000
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(int(0.6 * sr), 2)).astype(np.float32)
    player = FilePlayer(x, sr, blocksize=256)
    with caplog.at_level(logging.WARNING, logger="lj.audio"):
        player.start()
    try:
        assert player.fallback
        assert any("wall clock" in r.getMessage() for r in caplog.records)
        seen = []
        wait_for(lambda: seen.append(player.position) or player.finished, "the end", timeout=10.0)
    finally:
        player.stop()
    assert any(0 < p < len(x) for p in seen)          # it advanced gradually, not at once
    assert all(a <= b for a, b in zip(seen, seen[1:]))
    assert player.position == len(x)
    np.testing.assert_allclose(read_ring(player.ring, 0, len(x)), x.mean(axis=1), atol=1e-7)


def test_live_input_without_portaudio_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    for call in (LiveInput, list_devices):
        with pytest.raises(AudioError) as info:
            call()
        assert "not installed" in str(info.value) and "\n" not in str(info.value)


def test_file_player_loops(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    x = np.arange(300, dtype=np.float32)[:, None] / 300
    player = FilePlayer(x, 8000, blocksize=128, loop=True)
    player.start()
    try:
        wait_for(lambda: player.position >= 700, "two loops", timeout=10.0)
    finally:
        player.stop()
    assert not player.finished
    got = read_ring(player.ring, 0, 700)
    np.testing.assert_array_equal(got, np.tile(x[:, 0], 3)[:700])


# --- with PulseAudio -----------------------------------------------------------------------------

@pytest.mark.audio_server
def test_unknown_input_device_is_one_line(pulse_sink):
    with pytest.raises(AudioError) as info:
        LiveInput(device="no such device xyz")
    assert str(info.value) == ("no audio input device matches 'no such device xyz' "
                               "(run `lj devices` to list them)")
    with pytest.raises(AudioError) as info:
        LiveInput(device=capture_device(), channels=[99])
    assert "99" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.audio_server
def test_list_devices_shows_the_pulse_device(pulse_sink):
    table = list_devices()
    assert "pulse" in table or "default" in table
    assert any(mark in table for mark in ("*", ">", "<"))


@pytest.mark.audio_server
def test_live_input_hears_a_tone_burst_played_into_the_sink(pulse_sink, tmp_path, monkeypatch):
    burst_sr = 48000
    t = np.arange(int(0.5 * burst_sr)) / burst_sr
    tone = 0.5 * np.sin(2 * np.pi * 880 * t)
    tone[:240] *= np.linspace(0, 1, 240)
    tone[-240:] *= np.linspace(1, 0, 240)
    wav = tmp_path / "burst.wav"
    sf.write(str(wav), np.stack([tone, tone], axis=1).astype(np.float32), burst_sr)

    live = start_capture(pulse_sink, monkeypatch)
    try:
        sr = live.sample_rate
        quiet_from = live.position
        wait_for(lambda: live.position >= quiet_from + sr // 4, "silence to be captured", timeout=5.0)
        quiet = read_ring(live.ring, quiet_from, quiet_from + sr // 4)
        burst_from = live.position
        subprocess.run(["paplay", f"--device={pulse_sink['name']}", str(wav)],
                       check=True, timeout=15)
        done = live.position
        wait_for(lambda: live.position >= done + int(0.4 * sr), "the tail of the burst", timeout=5.0)
        heard = read_ring(live.ring, burst_from, live.position)
    finally:
        live.stop()

    assert rms(quiet) < 1e-3
    loud = loudest(heard, sr)
    assert rms(loud) > 0.1
    assert rms(loud) > 50 * max(rms(quiet), 1e-5)
    assert dominant_hz(loud, sr) == pytest.approx(880, abs=10)


@pytest.mark.audio_server
def test_file_player_plays_into_the_sink_in_step_with_its_ring(pulse_sink, monkeypatch):
    sr = 44100
    t = np.arange(int(1.0 * sr)) / sr
    x = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.2 * np.sin(2 * np.pi * 440 * t)],
                 axis=1).astype(np.float32)
    # The engine never plays and captures through PortAudio in one process (--audio and --input
    # exclude each other), and PortAudio's ALSA "pulse" device garbles exactly that case; so
    # the sink's monitor is recorded here by PulseAudio's own recorder, parec.
    cap_sr = 48000
    monkeypatch.setenv("PULSE_SINK", pulse_sink["name"])
    rec = subprocess.Popen(["parec", f"--device={pulse_sink['monitor']}", "--format=float32le",
                            f"--rate={cap_sr}", "--channels=1", "--raw"], stdout=subprocess.PIPE)
    chunks = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: rec.stdout.read(4096), b"")),
                              daemon=True)
    reader.start()
    player = FilePlayer(x, sr)
    try:
        # the recorder must be hearing the sink before the tone starts
        wait_for(lambda: sum(map(len, chunks)) >= 4 * cap_sr // 10, "parec to start recording", timeout=10.0)
        player.start()
        assert not player.fallback, "no sound card stream was opened"
        seen = []
        wait_for(lambda: seen.append(player.position) or player.finished, "the player to finish", timeout=10.0)
        time.sleep(0.4)  # the output's own latency
    finally:
        player.stop()
        rec.terminate()
        reader.join(5)
    raw = b"".join(chunks)
    heard = np.frombuffer(raw[: len(raw) // 4 * 4], np.float32)

    assert player.position == len(x) and player.finished
    assert any(0 < p < len(x) for p in seen)
    assert all(a <= b for a, b in zip(seen, seen[1:]))
    np.testing.assert_array_equal(read_ring(player.ring, 0, len(x)),
                                  x.mean(axis=1, dtype=np.float32))
    loud = loudest(heard, cap_sr)
    assert rms(loud) > 0.1
    assert dominant_hz(loud, cap_sr) == pytest.approx(440, abs=10)
    # all of the tone came out: about a second of it is audible
    audible = sum(rms(heard[i:i + 480]) > 0.05 for i in range(0, heard.size - 480, 480)) / 100
    assert audible == pytest.approx(1.0, abs=0.1)
