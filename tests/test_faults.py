"""The show goes on (issue 8): each fault against the real live loop, observed from outside.

Every test runs ``run_live`` (real OSC over UDP, real EGL rendering, real mapping files, a real
PulseAudio where audio is involved) and watches it the way a user would: the state it publishes
(frames, errors, audio), stills saved through ``/lj/trigger/still`` (the pixels as shown), and
the log. Nothing is timed; every wait is a condition with a generous bound.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from engine.audio.demo import demo_song, write_demo_wav
from engine.generators.cppn import CPPNGenerator
from engine.health import Health
from engine.live import LiveOptions, StopFlag, install_signal_handlers, run_live
from engine.render.record import probe
from support import SMALL_MAPPING, PacedSource, capture_device, free_port, wait_for

GOOD = SMALL_MAPPING
#: No effects: what is shown is the generator's frame, so a held frame is a held picture.
PLAIN = """[meta]
name = "{name}"
[latent]
keyframes = {{ seeds = [1, 2, 3] }}
walk = {{ seconds_per_key = 1.0 }}
"""


def osc(address, *args) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


class Show:
    """``run_live`` on a thread, with OSC on a free port, stills in ``tmp/stills`` and a Health."""

    def __init__(self, tmp_path, source, mapping=None, **kw):
        self.port = free_port()
        self.stills = tmp_path / "stills"
        self.health = Health()
        self.opts = LiveOptions(mapping=str(mapping) if mapping else None, size=32, headless=True,
                                osc_port=self.port, stills_dir=str(self.stills),
                                health_monitor=self.health, max_seconds=120, **kw)
        self.stop = StopFlag()
        self.out = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(5)
        self.thread = threading.Thread(target=self._run, args=(source,))
        self.thread.start()

    def _run(self, source):
        try:
            self.out["stats"] = run_live(source, self.opts, self.stop)
        except BaseException as exc:  # the one thing these tests must catch
            self.out["crash"] = exc

    def state(self, key=None):
        snap = self.health.snapshot()
        return snap if key is None else snap.get(key)

    def wait(self, pred, what, timeout=60):
        def check():
            assert "crash" not in self.out, f"the show crashed: {self.out['crash']!r}"
            return pred(self.health.snapshot())
        wait_for(check, what, timeout)

    def frames_advance(self, by=10, timeout=60):
        """Wait until the loop has shown ``by`` more frames than now (it keeps going)."""
        start = self.state("frames") or 0
        self.wait(lambda s: s.get("frames", 0) >= start + by, f"{by} more frames after {start}",
                  timeout)

    def send(self, packet: bytes):
        self.sock.sendto(packet, ("127.0.0.1", self.port))

    def still(self) -> np.ndarray:
        """The picture as shown now, through ``/lj/trigger/still`` (a PNG the loop writes)."""
        before = set(self.stills.glob("*.png")) if self.stills.exists() else set()
        self.send(osc("/lj/trigger/still", 1))
        found = []

        def saved():
            found[:] = sorted(set(self.stills.glob("*.png")) - before) if self.stills.exists() else []
            return bool(found)
        wait_for(saved, "a still", 30)
        time.sleep(0.2)  # written by the loop thread: let the file be closed
        return np.asarray(Image.open(found[0]).convert("RGB")).astype(int)

    def get(self, address):
        """Ask ``/lj/get`` over UDP; the value the loop answers with."""
        self.send(osc("/lj/get", address))
        data, _ = self.sock.recvfrom(65536)
        return OscPacket(data).messages[0].message.params[0]

    def finish(self):
        self.stop()
        self.thread.join(60)
        self.sock.close()
        assert not self.thread.is_alive(), "the loop did not stop"
        assert "crash" not in self.out, f"the show crashed: {self.out['crash']!r}"
        return self.out["stats"]


@pytest.fixture
def song():
    samples, sr, _ = demo_song(seconds=90.0)
    return samples, sr


# --- mapping files -------------------------------------------------------------------------------

def test_a_mapping_file_broken_in_every_way_mid_show(tmp_path, song, caplog):
    """Each fault in turn: the last good mapping keeps running, frames keep coming and the
    picture keeps moving; then a good version is written and picked up."""
    caplog.set_level(logging.INFO, logger="lj.session")
    path = tmp_path / "show.toml"
    path.write_text(GOOD.format(name="v0"))
    show = Show(tmp_path, PacedSource(*song), mapping=path)

    def broken(write, n):
        errors = show.state("mapping_errors") or 0
        write()
        if n:  # the fault is noticed and refused...
            show.wait(lambda s: s.get("mapping_errors", 0) >= errors + 1, "the refusal")
        show.frames_advance()
        assert show.state("mapping") == f"v{n}", "...and the last good mapping keeps running"
        if path.is_dir():
            path.rmdir()
        path.write_text(GOOD.format(name=f"v{n + 1}"))  # the good version comes back
        show.wait(lambda s: s.get("mapping") == f"v{n + 1}", f"v{n + 1} to be picked up")

    try:
        show.wait(lambda s: s.get("frames", 0) > 5, "the show to start")
        broken(lambda: path.write_text('[meta]\nname = "v0"\n[latent\n'), 0)   # saved broken
        broken(lambda: path.write_text(GOOD.format(name="half")[:40]), 1)       # half-written
        broken(path.unlink, 2)                                                  # deleted
        broken(lambda: (path.unlink(), path.mkdir()), 3)                        # a directory
        for i in range(10):                                          # ten saves in one second
            text = GOOD.format(name=f"flicker{i}")
            path.write_text(text if i % 2 else text.replace("level", "lvl"))
            time.sleep(0.1)
        path.write_text(GOOD.format(name="v5"))
        show.wait(lambda s: s.get("mapping") == "v5", "the last save to be picked up")
        a = show.still()
        show.frames_advance(30)
        b = show.still()
        assert np.abs(a - b).mean() > 0.5, "the picture still moves after all that"
    finally:
        stats = show.finish()
    assert stats.session.mapping.name == "v5"
    refused = [r.getMessage() for r in caplog.records if "keeping the last good one" in r.getMessage()]
    assert any("show.toml:3" in m for m in refused), "the syntax error names its line"
    assert any("not found" in m for m in refused) and any("directory" in m for m in refused)
    assert np.asarray(stats.frame_times).max() < 5.0, "no frame waited for a reload"


# --- the generator -------------------------------------------------------------------------------

class Faulty(CPPNGenerator):
    """The built-in generator with a switch: ``mode`` None, "raise", "nan", "inf" or "slow"."""

    instances = []

    def __init__(self, resolution):
        super().__init__(resolution)
        self.mode = None
        self.calls = 0
        Faulty.instances.append(self)

    def synthesize(self, w_plus, noise_strength=0.0, params=None):
        self.calls += 1
        if self.mode == "raise":
            raise RuntimeError("boom")
        if self.mode == "slow":
            time.sleep(0.3)  # many times this generator's usual frame time at 32x32
        image = super().synthesize(w_plus, noise_strength)
        if self.mode == "nan":
            image = image.clone()
            image[:, :, ::3, ::5] = float("nan")
        elif self.mode == "inf":
            image = image.clone()
            image[:, 0] = float("inf")
        return image


def test_a_failing_generator_holds_the_last_good_frame_and_logs_once_per_kind(
        tmp_path, song, caplog, monkeypatch):
    import engine.session

    caplog.set_level(logging.INFO)
    Faulty.instances.clear()
    monkeypatch.setattr(engine.session, "load_generator", lambda name, size: Faulty(size))
    path = tmp_path / "plain.toml"
    path.write_text(PLAIN.format(name="plain"))
    show = Show(tmp_path, PacedSource(*song), mapping=path)
    try:
        show.wait(lambda s: s.get("frames", 0) > 10, "the show to start")
        gen = Faulty.instances[-1]
        for mode in ("raise", "nan", "inf"):
            errors = show.state("generator_errors")
            gen.mode = mode
            show.wait(lambda s: s["generator_errors"] > errors + 3, f"{mode}: failures")
            held = show.still()
            show.frames_advance(20)
            assert show.state("generator_errors") > errors + 10, "it was still failing"
            assert np.array_equal(show.still(), held), f"{mode}: the last good frame holds"
            assert held.std() > 5, "a real picture is held, not a blank"
            assert show.health.snapshot()["status"] == "degraded"
            gen.mode = None
            show.frames_advance(10)
            assert not np.array_equal(show.still(), held), f"{mode}: pictures move again"
        late = show.state("late_frames")
        gen.mode = "slow"
        # a frame shown without waiting for the generator, and frames keep coming meanwhile
        show.wait(lambda s: s["late_frames"] > late, "a frame held for a late generator")
        show.frames_advance(5)
        gen.mode = None
        show.frames_advance(10)
        assert show.health.snapshot()["status"] == "ok"
    finally:
        show.finish()
    failed = [r.getMessage() for r in caplog.records if "generator failed" in r.getMessage()]
    assert sum("boom" in m for m in failed) == 1, failed
    assert sum("NaN or inf" in m for m in failed) == 1, failed  # NaN and inf: one kind
    assert len(failed) == 2, failed


# --- OSC -----------------------------------------------------------------------------------------

def fuzz_packets(rng):
    """Every kind of bad OSC we know, a few thousand packets."""
    good = osc("/lj/param/glow", 0.5)
    out = [bytes(rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8))
           for _ in range(500)]                                                     # random bytes
    out += [good[:n] for n in range(len(good))]                                     # truncated
    out += [b"/lj/param/glow\x00\x00" + tag + b"\x00" * (4 - len(tag) % 4) + b"\x3f\x00\x00\x00"
            for tag in (b",x", b",s", b",b", b",ii", b"f", b",\xff", b",d")]        # wrong tags
    out += [osc("/lj/param/glow", v) for v in (float("nan"), float("inf"), -float("inf"))]
    out += [osc("/lj/param/glow", "loud"), osc("/lj/mapping/load", 3.0)]            # wrong types
    for depth in (9, 20, 60):                                                       # deep bundles
        b = OscBundleBuilder(IMMEDIATELY)
        b.add_content(OscMessageBuilder("/lj/param/glow").build())
        for _ in range(depth):
            outer = OscBundleBuilder(IMMEDIATELY)
            outer.add_content(b.build())
            b = outer
        out.append(b.build().dgram)
    out.append(b"#bundle\x00" + b"\x00" * 8 + b"\x7f\xff\xff\xff" + good)           # lying size
    flipped = []
    for _ in range(500):                                                            # bit flips
        p = bytearray(good)
        p[int(rng.integers(len(p)))] ^= 1 << int(rng.integers(8))
        flipped.append(bytes(p))
    return out + flipped


def test_osc_fuzz_and_a_flood_leave_the_show_running_and_listening(tmp_path, song, caplog):
    caplog.set_level(logging.WARNING)
    show = Show(tmp_path, PacedSource(*song))
    try:
        show.wait(lambda s: s.get("frames", 0) > 5, "the show to start")
        rng = np.random.default_rng(8)
        for packet in fuzz_packets(rng):
            show.send(packet)
        for _ in range(5000):                                                       # a flood
            show.send(b"\x01" + bytes(rng.integers(0, 256, 40, dtype=np.uint8)))
        show.frames_advance(20)
        show.send(osc("/lj/param/glow", 0.75))
        wait_for(lambda: abs(show.get("/lj/param/glow") - 0.75) < 1e-3, "the good value", 30)
        show.wait(lambda s: s["osc_bad_packets"] > 500, "the bad packets to be counted")
        a = show.still()
        show.frames_advance(20)
        assert np.abs(show.still() - a).mean() > 0.5, "the picture still moves"
    finally:
        stats = show.finish()
    assert stats.controls.stats["bad_packets"] > 1000
    lines = [r for r in caplog.records if r.name == "lj.osc"]
    assert 1 <= len(lines) <= 20, "a flood is reported, not logged packet by packet"


# --- the audio device -----------------------------------------------------------------------------

@pytest.mark.audio_server
def test_the_audio_server_restarts_under_a_running_show(pulse_server, tmp_path, monkeypatch, caplog):
    """The visuals go on while the audio server is gone (audio_lost=1), capture comes back by
    itself, each transition logged once."""
    from engine.audio.sources import LiveInput
    from test_audio_recovery import start_server

    caplog.set_level(logging.INFO, logger="lj.audio")
    runtime = tmp_path / "own"
    runtime.mkdir()
    proc, env = start_server(runtime)
    monkeypatch.setenv("PULSE_SERVER", env["PULSE_SERVER"])
    monkeypatch.setenv("PULSE_SOURCE", "own.monitor")
    show = Show(tmp_path, LiveInput(device=capture_device()))
    try:
        show.wait(lambda s: s.get("frames", 0) > 5, "the show to start")
        proc.terminate()
        proc.wait(10)
        show.wait(lambda s: s["audio_lost"] == 1, "the loss to be noticed")
        assert show.health.snapshot()["status"] == "degraded"
        a = show.still()
        show.frames_advance(30)
        assert np.abs(show.still() - a).mean() > 0.5, "the visuals go on in silence"
        proc, env = start_server(runtime)
        show.wait(lambda s: s["audio_lost"] == 0 and s["audio_reopens"] >= 1, "capture to resume")
        show.frames_advance(10)
    finally:
        show.finish()
        proc.terminate()
        proc.wait(10)
    messages = [r.getMessage() for r in caplog.records if r.name == "lj.audio"]
    assert sum("lost" in m for m in messages) == 1, messages
    assert sum("is back" in m for m in messages) == 1, messages


@pytest.mark.audio_server
def test_the_null_sink_vanishes_and_returns_under_a_running_show(pulse_sink, tmp_path, monkeypatch,
                                                                 caplog):
    """The sink the show listens to is unloaded (PulseAudio moves the stream elsewhere) and
    loaded again: frames and pictures go on meanwhile, the input is reopened by itself (logged)
    and hears what is played into the returned sink."""
    from engine.audio.sources import LiveInput
    from test_audio_recovery import hears, tone_file

    caplog.set_level(logging.INFO, logger="lj.audio")
    monkeypatch.setenv("PULSE_SOURCE", pulse_sink["monitor"])
    source = LiveInput(device=capture_device())
    show = Show(tmp_path, source)
    try:
        show.wait(lambda s: s.get("frames", 0) > 5, "the show to start")
        clock = source.position
        subprocess.run(["pactl", "unload-module", pulse_sink["module"]], check=True)
        # the stream stalls or moves; either way the clock runs on (back-filled with silence)
        wait_for(lambda: source.position > clock + 2 * source.sample_rate, "the audio clock", 30)
        a = show.still()
        show.frames_advance(30)
        assert np.abs(show.still() - a).mean() > 0.5, "the visuals go on"
        pulse_sink["module"] = subprocess.run(
            ["pactl", "load-module", "module-null-sink", f"sink_name={pulse_sink['name']}",
             "rate=48000", "channels=2"], capture_output=True, text=True, check=True).stdout.strip()
        assert hears(source, 880.0, pulse_sink["name"], tone_file(tmp_path), timeout=40), \
            "capture did not come back to the returned sink"
        show.wait(lambda s: s["audio_reopens"] >= 1, "the reopen to be published", 30)
        show.frames_advance(10)
    finally:
        show.finish()
    messages = [r.getMessage() for r in caplog.records if r.name == "lj.audio"]
    assert any("lost" in m or "exactly silent" in m for m in messages), messages


# --- signals ---------------------------------------------------------------------------------------

def run_cli(*args):
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return subprocess.Popen([sys.executable, "-m", "engine", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("mode", ["run", "installation"])
def test_a_signal_ends_a_live_run_cleanly(tmp_path, sig, mode):
    song = write_demo_wav(tmp_path / "song.wav", seconds=30.0)
    port = free_port()
    extra = ["--installation"] if mode == "installation" else []
    proc = run_cli("run", "--audio", str(song), "--headless", "--osc-port", str(port),
                   "--no-oscquery", "--size", "32", *extra)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not any("running:" in line for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(sig)
    out = proc.stdout.read()
    proc.wait(30)
    reader.join(5)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "frames" in out, "the run ended through its normal path (summary printed)"
    assert "Traceback" not in err and "restarting" not in err


def test_sigterm_during_start_up_is_a_clean_exit_too(tmp_path):
    song = write_demo_wav(tmp_path / "song.wav", seconds=5.0)
    proc = run_cli("run", "--audio", str(song), "--headless", "--no-osc", "--size", "32")
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, 130), err
    assert "Traceback" not in err


def _resources():
    return len(os.listdir("/proc/self/fd")), threading.active_count()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_releases_what_the_loop_held(tmp_path, song, sig):
    """In one process: after the signal the OSC and OSCQuery ports are free again, and no
    thread or file descriptor is left behind (compared with a run before)."""
    def once(signal_it):
        port, qport = free_port(), free_port(socket.SOCK_STREAM)
        stop = StopFlag()
        opts = LiveOptions(size=32, headless=True, osc_port=port, oscquery_port=qport,
                           max_seconds=None if signal_it else 0.5)
        out = {}
        loop = threading.Thread(target=lambda: out.setdefault("stats", run_live(
            PacedSource(*song), opts, stop)))
        loop.start()
        if signal_it:
            old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
            install_signal_handlers(stop)
            try:
                time.sleep(1.0)
                os.kill(os.getpid(), sig)
                deadline = time.monotonic() + 60
                while loop.is_alive() and time.monotonic() < deadline:
                    loop.join(0.05)  # the handler runs on this (the main) thread meanwhile
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
        loop.join(60)
        assert not loop.is_alive() and out["stats"].frames > 0
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", port))  # free again
        udp.close()
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", qport))
        tcp.close()

    once(False)  # warm: the GL driver and libraries open what they keep for the process
    fds0, threads0 = _resources()
    once(True)
    deadline = time.monotonic() + 10  # a Zeroconf announcement in progress ends on its thread
    while _resources()[1] > threads0 and time.monotonic() < deadline:
        time.sleep(0.05)
    fds1, threads1 = _resources()
    assert threads1 <= threads0, "a thread outlived the loop"
    assert fds1 <= fds0 + 1, "a file descriptor outlived the loop"


def test_ctrl_c_during_a_render_leaves_a_playable_file(tmp_path):
    song = write_demo_wav(tmp_path / "song.wav", seconds=30.0)
    video = tmp_path / "cut.mp4"
    proc = run_cli("render", str(song), "-o", str(video), "--size", "64", "-q")
    deadline = time.monotonic() + 60

    def rendered():  # lj render writes a hidden file beside the output until it is done
        try:
            return sum(p.stat().st_size for p in tmp_path.glob(".cut.lj-render-*.mp4"))
        except FileNotFoundError:   # moved into place just now: the render finished
            return 0

    while rendered() < 2000 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    info = probe(video)
    assert 0 < info["frames"] < 900
    assert info["has_audio"]
    assert info["audio_duration"] == pytest.approx(info["duration"], abs=0.2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "song.wav"]  # no temp left
