"""MIDI in: the message -> control logic (pure, real mido messages), learn with MIDI sources,
clock -> tempo into the real beat tracker, and the adapter's behaviour without a MIDI system.

A real virtual MIDI port is used when this machine has a MIDI system (an ALSA sequencer, or a
JACK server); see test_midi_through_a_real_virtual_port.
"""

from __future__ import annotations

import logging

import pytest

mido = pytest.importorskip("mido")

from engine.audio.beat import BeatTracker  # noqa: E402
from engine.control import Controls  # noqa: E402
from engine.control.hooks import LiveControl  # noqa: E402
from engine.control.midi import PPQN, MidiInput, MidiInterpreter, resolve_input  # noqa: E402
from engine.errors import ControlError  # noqa: E402


class Rec:
    def __init__(self):
        self.values, self.commands = [], []

    def feed(self, source, value):
        self.values.append((source, value))

    def command(self, *cmd):
        self.commands.append(cmd)


def interp():
    rec = Rec()
    return MidiInterpreter(rec.feed, rec.command), rec


def test_cc_and_notes_become_sources_with_values_zero_to_one():
    m, rec = interp()
    m.handle(mido.Message("control_change", channel=0, control=7, value=127))
    m.handle(mido.Message("control_change", channel=15, control=70, value=0))
    m.handle(mido.Message("note_on", channel=9, note=36, velocity=127))
    m.handle(mido.Message("note_on", channel=9, note=36, velocity=0))  # running-status note off
    m.handle(mido.Message("note_off", channel=9, note=37, velocity=64))
    m.handle(mido.Message("pitchwheel", channel=0, pitch=100))  # not used
    assert rec.values == [("midi:cc:1:7", 1.0), ("midi:cc:16:70", 0.0), ("midi:note:10:36", 1.0),
                          ("midi:note:10:36", 0.0), ("midi:note:10:37", 0.0)]


def test_fourteen_bit_pairs_are_recognised_from_msb_then_lsb():
    m, rec = interp()
    cc = lambda control, value, t: m.handle(  # noqa: E731
        mido.Message("control_change", channel=0, control=control, value=value), now=t)
    cc(1, 64, 1.0)  # an MSB alone: 7-bit
    cc(33, 127, 1.0005)  # its LSB right behind it
    assert rec.values == [("midi:cc:1:1", 64 / 127), ("midi:cc:1:1", (64 * 128 + 127) / 16383)]
    rec.values.clear()
    cc(1, 127, 2.0)  # now waits for the LSB
    cc(33, 127, 2.0005)
    assert rec.values == [("midi:cc:1:1", 1.0)]
    # a CC 32-63 that does not follow its MSB is an ordinary control
    cc(40, 127, 3.0)
    assert rec.values[-1] == ("midi:cc:1:40", 1.0)
    # a nanoKONTROL2: fader 1 (CC 0) moved, then solo 1 (CC 32) pressed 200 ms later: no pair
    cc(0, 100, 4.0)
    cc(32, 127, 4.2)
    assert rec.values[-2:] == [("midi:cc:1:0", 100 / 127), ("midi:cc:1:32", 1.0)]


def test_clock_gives_the_tempo_and_start_resets_the_phase():
    m, rec = interp()
    m.handle(mido.Message("start"))
    assert rec.commands == [("phase_reset",)]
    period = 60.0 / (128.0 * PPQN)
    for i in range(PPQN * 4):
        m.handle(mido.Message("clock"), now=10.0 + i * period)
    tempos = [c[1] for c in rec.commands if c[0] == "tempo"]
    assert tempos and tempos[0] == pytest.approx(128.0, abs=0.01)
    assert len(tempos) <= 4  # re-sent once a beat when steady, not on every pulse
    # jitter of +-1 ms per pulse averages out over a beat
    m2, rec2 = interp()
    t = 0.0
    for i in range(PPQN * 2):
        m2.handle(mido.Message("clock"), now=t + (0.001 if i % 2 else -0.001))
        t += 60.0 / (100.0 * PPQN)
    assert [c for c in rec2.commands if c[0] == "tempo"][-1][1] == pytest.approx(100.0, abs=0.5)


def test_stop_halts_tempo_and_a_gap_restarts_the_measurement():
    m, rec = interp()
    period = 60.0 / (120.0 * PPQN)
    for i in range(PPQN + 1):
        m.handle(mido.Message("clock"), now=i * period)
    m.handle(mido.Message("stop"))
    n = len(rec.commands)
    for i in range(PPQN * 2):
        m.handle(mido.Message("clock"), now=5.0 + i * period)
    assert len(rec.commands) == n  # stopped: no tempo
    m.handle(mido.Message("continue"))
    for i in range(PPQN + 1):  # after a 10 s gap: a fresh beat of pulses at 90 BPM
        m.handle(mido.Message("clock"), now=20.0 + i * 60.0 / (90.0 * PPQN))
    assert rec.commands[-1] == ("tempo", pytest.approx(90.0, abs=0.01))


def test_midi_learn_and_clock_reach_controls_and_the_real_beat_tracker(tmp_path):
    controls = Controls(smoothing=0)
    controls.declare_param("glow", 0.0, 0.0, 2.0)
    controls.bindings.attach(tmp_path / "m.toml", {})
    m = MidiInterpreter(controls.bindings.feed, controls.queue)
    controls.bindings.learn("param.glow")
    m.handle(mido.Message("control_change", channel=0, control=21, value=127))
    assert controls.bindings.table == {"midi:cc:1:21": "/lj/param/glow"}
    m.handle(mido.Message("control_change", channel=0, control=21, value=0))
    assert controls.snapshot().params["glow"] == 0.0
    m.handle(mido.Message("control_change", channel=0, control=21, value=127))
    assert controls.snapshot().params["glow"] == 2.0
    m.handle(mido.Message("start"))
    for i in range(PPQN + 1):
        m.handle(mido.Message("clock"), now=i * 60.0 / (140.0 * PPQN))

    class Session:  # what LiveControl.commands reaches: session.analysis.extractor.beat
        class analysis:
            class extractor:
                beat = BeatTracker(44100 / 512)

    tracker = Session.analysis.extractor.beat
    LiveControl(controls).commands(controls.snapshot().commands, Session)
    assert tracker.bpm == pytest.approx(140.0, rel=0.01)


def test_resolve_input_by_index_name_or_unique_part():
    names = ["nanoKONTROL2 SLIDER/KNOB", "APC MINI MIDI 1"]
    assert resolve_input("1", names) == "APC MINI MIDI 1"
    assert resolve_input("nanokontrol", names) == "nanoKONTROL2 SLIDER/KNOB"
    with pytest.raises(ControlError, match="not found .*0: nanoKONTROL2"):
        resolve_input("launchpad", names)
    with pytest.raises(ControlError, match="matches several"):
        resolve_input("i", names)


def test_no_midi_system_is_one_line_and_the_show_runs_on(monkeypatch, caplog):
    import engine.control.midi as midi

    def fail():
        raise ControlError("no MIDI system available (no sequencer here)")

    monkeypatch.setattr(midi, "backend", fail)
    with pytest.raises(ControlError) as info:
        MidiInput(Controls(), ["0"]).start()
    assert "\n" not in str(info.value)
    live = LiveControl(Controls())
    with caplog.at_level(logging.WARNING, logger="lj.control"):
        live.start(midi=["nanoKONTROL2"])
    assert live.midi is None
    assert [r.getMessage() for r in caplog.records] == [
        "no MIDI system available (no sequencer here); running without MIDI"]
    live.close()


@pytest.fixture
def jack_server(monkeypatch):
    """A private JACK server with the dummy driver (no sound hardware): a real MIDI system on a
    machine without an ALSA sequencer (containers have no /dev/snd/seq)."""
    import os
    import shutil
    import subprocess
    import time
    import uuid

    import engine.control.midi as midi

    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed (Debian: jackd2), so there is no MIDI system here")
    name = f"lj-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("JACK_DEFAULT_SERVER", name)
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    monkeypatch.setenv("JACK_NO_AUDIO_RESERVATION", "1")
    monkeypatch.delenv("MIDO_BACKEND", raising=False)
    monkeypatch.setattr(midi, "_backend", None)
    proc = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", "44100",
                             "-p", "256"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    be = mido.Backend("mido.backends.rtmidi/UNIX_JACK", load=True)
    deadline = time.monotonic() + 10
    while True:
        try:
            be.get_input_names()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.skip("the JACK server did not start")
            time.sleep(0.1)
    yield be
    proc.terminate()
    proc.wait(10)
    monkeypatch.setattr(midi, "_backend", None)
    assert os.environ["JACK_DEFAULT_SERVER"] == name


def test_midi_through_a_real_virtual_port(jack_server, tmp_path):
    """A virtual MIDI output (a controller stand-in) -> JACK -> MidiInput -> learn, CC, clock."""
    import time

    from support import wait_for

    from engine.control.midi import describe_inputs

    out = jack_server.open_output("lj-test-controller", virtual=True)
    try:
        listing = describe_inputs()
        assert "lj-test-controller" in listing
        controls = Controls(smoothing=0)
        controls.declare_param("glow", 0.0, 0.0, 1.0)
        controls.bindings.attach(tmp_path / "show.toml", {})
        midi_in = MidiInput(controls, ["lj-test-controller"])
        midi_in.start()
        try:
            # JACK connects the ports asynchronously: probe until a message gets through
            def through():
                out.send(mido.Message("control_change", channel=0, control=99, value=0))
                time.sleep(0.05)
                return midi_in.messages > 0
            wait_for(through, "the port connection", timeout=20)
            controls.bindings.learn("param.glow")
            out.send(mido.Message("control_change", channel=2, control=14, value=127))
            wait_for(lambda: controls.bindings.table.get("midi:cc:3:14") == "/lj/param/glow",
                     "the learned CC", timeout=20)
            out.send(mido.Message("control_change", channel=2, control=14, value=0))
            wait_for(lambda: controls.snapshot().params["glow"] == 0.0, "the CC value", timeout=20)
            seen = midi_in.messages
            out.send(mido.Message("start"))
            wait_for(lambda: midi_in.messages > seen, "the start message", timeout=20)
            assert ("phase_reset",) in controls.snapshot().commands
        finally:
            midi_in.stop()
        assert midi_in.errors == 0
        assert (tmp_path / "show.bindings.toml").read_text().count("midi:cc:3:14") == 1
    finally:
        out.close()
