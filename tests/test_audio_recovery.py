"""A live input that loses its device keeps the show's clock running on silence and comes back.

Both cases run against a real PulseAudio: a source that vanishes and returns (a null sink unloaded
and loaded again), and the whole audio server killed and restarted.
"""

import os
import shutil
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from engine.audio.sources import LiveInput
from support import capture_device, wait_for

pytestmark = pytest.mark.audio_server





def clock_rate(live, seconds=1.5):
    """Samples per second the input's clock advances by."""
    p0, t0 = live.position, time.monotonic()
    time.sleep(seconds)
    return (live.position - p0) / (time.monotonic() - t0)


def tone_file(tmp_path, hz=880.0, seconds=0.6, sr=48000):
    t = np.arange(int(seconds * sr)) / sr
    path = tmp_path / f"tone{int(hz)}.wav"
    sf.write(path, np.stack([0.5 * np.sin(2 * np.pi * hz * t)] * 2, 1).astype(np.float32), sr)
    return path


def hears(live, hz, sink, wav, env=None, timeout=25.0):
    """Play ``wav`` into ``sink`` every second until the input hears ``hz`` in it."""
    sr = live.sample_rate
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        subprocess.run(["paplay", f"--device={sink}", str(wav)], env=env, timeout=10,
                       capture_output=True)
        time.sleep(0.3)
        n = sr
        got = np.zeros(n, np.float32)
        if live.position > n and live.ring.read(live.position - n, got):
            if np.sqrt(np.mean(got ** 2)) > 0.05:
                spec = np.abs(np.fft.rfft(got * np.hanning(n)))
                if abs(np.argmax(spec) * sr / n - hz) < 15:
                    return True
    return False


def test_a_source_that_vanishes_and_returns(pulse_sink, tmp_path, monkeypatch):
    monkeypatch.setenv("PULSE_SOURCE", pulse_sink["monitor"])
    live = LiveInput(device=capture_device())
    try:
        live.start()
        wait_for(lambda: live.position > live.sample_rate // 4, "the capture to start", timeout=10)
        subprocess.run(["pactl", "unload-module", pulse_sink["module"]], check=True)
        time.sleep(3.0)  # PulseAudio moves the stream, or it stalls, the loss is noticed and
        # the gap is back-filled; after that the clock runs at the real rate
        assert clock_rate(live) == pytest.approx(live.sample_rate, rel=0.25), \
            "the audio clock keeps running while the source is gone"
        pulse_sink["module"] = subprocess.run(
            ["pactl", "load-module", "module-null-sink", f"sink_name={pulse_sink['name']}",
             "rate=48000", "channels=2"], capture_output=True, text=True, check=True).stdout.strip()
        assert hears(live, 880.0, pulse_sink["name"], tone_file(tmp_path)), \
            "capture did not come back to the returned source"
        assert live.reopens >= 1
    finally:
        live.stop()


def start_server(runtime):
    sock = runtime / "native"
    script = runtime / "own.pa"
    script.write_text(f"load-module module-native-protocol-unix socket={sock} auth-anonymous=1\n"
                      "load-module module-null-sink sink_name=own rate=48000\n"
                      "load-module module-always-sink\n")
    env = dict(os.environ, PULSE_RUNTIME_PATH=str(runtime), PULSE_STATE_PATH=str(runtime),
               PULSE_SERVER=f"unix:{sock}")
    proc = subprocess.Popen(["pulseaudio", "-n", "-F", str(script), "--daemonize=no",
                             "--exit-idle-time=-1", "--use-pid-file=no", "--log-level=error"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode == 0,
             "the audio server to start", timeout=15)
    subprocess.run(["pactl", "set-default-source", "own.monitor"], env=env, check=True)
    return proc, env


def test_the_audio_server_restarts(pulse_server, tmp_path, monkeypatch):
    runtime = tmp_path / "own"
    runtime.mkdir()
    proc, env = start_server(runtime)
    monkeypatch.setenv("PULSE_SERVER", env["PULSE_SERVER"])
    monkeypatch.setenv("PULSE_SOURCE", "own.monitor")
    live = LiveInput(device=capture_device())
    try:
        live.start()
        wait_for(lambda: live.position > live.sample_rate // 4, "the capture to start", timeout=10)
        proc.terminate()
        proc.wait(10)
        wait_for(lambda: live.lost, "the loss to be noticed", timeout=10)
        assert clock_rate(live) == pytest.approx(live.sample_rate, rel=0.25)
        proc, env = start_server(runtime)
        wait_for(lambda: not live.lost, "the input to come back", timeout=20)
        assert live.reopens >= 1
        assert hears(live, 660.0, "own", tone_file(tmp_path, hz=660.0), env=env)
    finally:
        live.stop()
        proc.terminate()
        proc.wait(10)
