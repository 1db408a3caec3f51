"""The live loop against real parts: a PulseAudio capture, an X window, OSC over UDP."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf
from pythonosc.osc_packet import OscPacket
from pythonosc.udp_client import SimpleUDPClient

from engine.audio.demo import demo_song, write_demo_wav
from engine.live import LiveOptions, StopFlag, run_live
from engine.session import ArrayReader, Session
from support import capture_device, PacedSource, free_port


STATIC = """
[meta]
name = "static unless it hears something"
[latent]
keyframes = { seeds = [5] }
walk = { seconds_per_key = 1000 }
truncation = 1.0
noise = 0.0
[[route]]
from = "0"
to = "latent.speed"
[[route]]
from = "min(rms * 30, 3)"
to = "latent.push"
direction = { seed = 3 }
layers = "all"
"""



@pytest.mark.audio_server
def test_live_capture_reacts_to_a_tone_burst_and_not_to_silence(pulse_sink, tmp_path, monkeypatch):
    from engine.audio.sources import LiveInput
    from engine.render.context import headless_context

    monkeypatch.setenv("PULSE_SOURCE", pulse_sink["monitor"])
    mapping = tmp_path / "static.toml"
    mapping.write_text(STATIC)
    source = LiveInput(device=capture_device())
    session = Session(source.sample_rate, mapping, size=(48, 48), threaded=False)
    ctx = headless_context()
    session.attach_renderer(ctx, (48, 48))

    def frame():
        params = session.params_at(source.ring, source.position)
        session.runner.submit(params)
        session.draw(session.runner.result(), params)
        return session.renderer.read().astype(np.int16)

    sr = 48000
    t = np.arange(int(0.8 * sr)) / sr
    wav = tmp_path / "burst.wav"
    sf.write(wav, np.stack([0.5 * np.sin(2 * np.pi * 440 * t)] * 2, 1).astype(np.float32), sr)
    try:
        source.start()
        deadline = time.monotonic() + 10
        while source.position < source.sample_rate // 2:
            assert time.monotonic() < deadline, "the capture never delivered audio"
            time.sleep(0.02)
        quiet = [frame() for _ in range(5)]
        time.sleep(0.2)
        quiet.append(frame())
        assert all(np.array_equal(quiet[0], q) for q in quiet), "silence must not change the frame"
        player = subprocess.Popen(["paplay", f"--device={pulse_sink['name']}", str(wav)])
        biggest = 0.0
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and biggest < 20:
            biggest = max(biggest, float(np.abs(frame() - quiet[0]).mean()))
            time.sleep(0.01)
        player.wait(10)
        assert biggest >= 20, f"the tone burst barely changed the frame ({biggest:.1f})"
    finally:
        source.stop()
        session.close()
        ctx.release()


def test_osc_in_and_out_while_the_loop_runs(tmp_path):
    """Real UDP on 127.0.0.1: a param changes a shader uniform, a mapping loads, features stream out."""
    samples, sr, _ = demo_song(seconds=30.0)
    other = tmp_path / "other.toml"
    other.write_text('[meta]\nname = "loaded over osc"\n[params]\nglow = 0.5\n'
                     '[shaders]\nchain = ["feedback"]\n'
                     '[[route]]\nfrom = "param.glow"\nto = "shader.feedback.amount"\n')
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(5)
    in_port = free_port()
    query_port = free_port(socket.SOCK_STREAM)
    opts = LiveOptions(size=32, headless=True, osc_port=in_port, oscquery_port=query_port,
                       osc_out=[("127.0.0.1", listener.getsockname()[1])], max_seconds=20,
                       stills_dir=str(tmp_path / "stills"),
                       show_dirs=[str(tmp_path)])  # where /lj/mapping/load may load from
    stop = StopFlag()
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("stats", run_live(
        PacedSource(samples, sr), opts, stop)))
    thread.start()
    try:
        data, _ = listener.recvfrom(65536)  # the feature stream is running
        names = {m.message.address for m in OscPacket(data).messages}
        assert {"/lj/feature/bass", "/lj/feature/level", "/lj/feature/chroma", "/lj/time"} <= names
        chroma = next(m.message for m in OscPacket(data).messages if m.message.address == "/lj/feature/chroma")
        assert len(chroma.params) == 12
        client = SimpleUDPClient("127.0.0.1", in_port)
        client.send_message("/lj/mapping/load", str(other))
        client.send_message("/lj/param/glow", 0.25)
        client.send_message("/lj/trigger/still", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(b"\x00garbage that is not OSC", ("127.0.0.1", in_port))  # logged, ignored
        time.sleep(1.5)
        # the loaded mapping's parameter is declared: OSCQuery lists it, /lj/get answers
        with urllib.request.urlopen(f"http://127.0.0.1:{query_port}/lj/param/glow?VALUE",
                                    timeout=5) as reply:
            assert json.loads(reply.read())["VALUE"][0] == pytest.approx(0.25, abs=1e-3)
        from pythonosc.osc_message_builder import OscMessageBuilder

        ask = OscMessageBuilder("/lj/get")
        ask.add_arg("/lj/param/glow")
        sock.settimeout(5)
        sock.sendto(ask.build().dgram, ("127.0.0.1", in_port))
        answer = OscPacket(sock.recvfrom(65536)[0]).messages[0].message
        assert answer.address == "/lj/param/glow" and answer.params[0] == pytest.approx(0.25, abs=1e-3)
        sock.close()
        states = set()
        deadline = time.monotonic() + 5
        while "/lj/state/mapping" not in states and time.monotonic() < deadline:
            states |= {m.message.address for m in OscPacket(listener.recvfrom(65536)[0]).messages}
        assert "/lj/state/mapping" in states
    finally:
        stop()
        thread.join(30)
    stats = result["stats"]
    session, controls = stats.session, stats.controls
    assert session.mapping.name == "loaded over osc"
    assert stats.last_params.uniforms["feedback.amount"] == pytest.approx(0.25)
    assert controls.stats["bad_packets"] >= 1
    assert stats.frames > 10
    stills = list((tmp_path / "stills").glob("lj-*.png"))
    assert len(stills) == 1, "one /lj/trigger/still, one PNG of the frame as shown"
    from PIL import Image

    assert Image.open(stills[0]).size == (32, 32)


@pytest.mark.window
def test_lj_run_opens_a_window_and_plays(xvfb_display, tmp_path):
    song = write_demo_wav(tmp_path / "song.wav", seconds=4.0)
    env = dict(os.environ, DISPLAY=xvfb_display)
    result = subprocess.run(
        [sys.executable, "-m", "engine", "run", "--audio", str(song), "--size", "64",
         "--frames", "40", "--osc-port", "0", "--overlay"],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "40 frames" in result.stdout


@pytest.mark.window
def test_the_window_shows_the_rendered_frame(xvfb_display):
    from engine.render.context import Window

    samples, sr, _ = demo_song(seconds=3.0)
    session = Session(sr, size=(64, 64), threaded=False)
    window = Window((64, 64), vsync=False)
    try:
        session.attach_renderer(window.ctx, (64, 64))
        params = session.params_at(ArrayReader(samples.mean(1)), sr)
        session.runner.submit(params)
        session.draw(session.runner.result(), params)
        expected = session.renderer.read()
        fb = window.framebuffer_size
        session.renderer.present(window.ctx.screen, fb)
        raw = np.frombuffer(window.ctx.screen.read(components=3, alignment=1), np.uint8)
        shown = raw.reshape(fb[1], fb[0], 3)[::-1]
        assert shown.shape == expected.shape
        assert np.abs(shown.astype(int) - expected).mean() < 3
        assert expected.std() > 10, "a real picture, not a blank"
        window.swap()
    finally:
        session.close()
        window.close()
