"""MIDI in: controllers drive targets through bindings, MIDI clock drives the tempo.

Two parts, as everywhere in the control stage:

- :class:`MidiInterpreter` — pure logic, no ports: one MIDI message in, its effect out. CC and
  notes become *sources* fed to :class:`~engine.control.learn.Bindings` (``midi:cc:<ch>:<n>``
  with ``value / 127``; ``midi:note:<ch>:<n>`` with ``velocity / 127`` on note-on and 0 on
  note-off; channels 1–16), so MIDI learn and the ``[bindings]`` file work exactly as for OSC.
  A 14-bit controller (CC 0–31 as MSB followed by CC 32–63 as its LSB) is recognised when the LSB
  follows its MSB within 5 ms and then sends ``(msb * 128 + lsb) / 16383`` under the MSB's source. MIDI
  clock (24 pulses per quarter note) gives a tempo, measured over the last beat of pulses and
  queued as ``("tempo", bpm)`` for the frame loop; Start queues ``("phase_reset",)`` (beat one
  now), Stop stops tempo updates until the next Start/Continue.
- :class:`MidiInput` — the thin adapter: opens ports with mido (python-rtmidi backend) and hands
  every message to the interpreter from the backend's callback thread. A missing backend or port
  is one clear line; the show runs on without MIDI.

Install with ``pip install latent-jockey[midi]`` (mido, python-rtmidi).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque

from engine.errors import ControlError

log = logging.getLogger("lj.midi")

#: MIDI clock pulses per quarter note.
PPQN = 24
#: Tempo is re-sent when it moved by more than this many BPM (or once per beat).
TEMPO_STEP = 0.2
#: A pulse gap longer than this (seconds) restarts the tempo measurement (the clock stopped).
CLOCK_TIMEOUT = 0.5
TEMPO_RANGE = (20.0, 400.0)
#: A 14-bit controller sends the LSB right behind its MSB; a CC 32-63 later than this after the
#: MSB is an ordinary control (e.g. a nanoKONTROL2 solo button pressed after moving fader 1).
FINE_WINDOW = 0.005


def cc_source(channel: int, control: int) -> str:
    """``midi:cc:<channel 1-16>:<control>`` for mido's 0-based channel."""
    return f"midi:cc:{channel + 1}:{control}"


def note_source(channel: int, note: int) -> str:
    return f"midi:note:{channel + 1}:{note}"


class MidiInterpreter:
    """Turn MIDI messages into binding values and tempo commands (see the module doc).

    ``feed(source, value)`` receives binding values (normally ``Bindings.feed``) and
    ``command(*cmd)`` queued commands (normally ``Controls.queue``). Messages are anything with
    mido's attributes (``type``, ``channel``, ``control``, ``value``, ``note``, ``velocity``).
    """

    def __init__(self, feed, command):
        self.feed = feed
        self.command = command
        self._msb: dict[tuple[int, int], int] = {}  # (channel, cc 0-31) -> last MSB
        self._last_cc: tuple[int, int] | None = None
        self._last_cc_t = -1e9
        self._fine: set[tuple[int, int]] = set()  # pairs seen sending MSB then LSB
        self._pulses: deque[float] = deque(maxlen=PPQN + 1)
        self._running = True
        self._sent_bpm = 0.0
        self._since_sent = 0
        self.bpm: float | None = None

    def handle(self, msg, now: float | None = None) -> None:
        """One message at time ``now`` (seconds, monotonic; default: the clock)."""
        kind = getattr(msg, "type", None)
        if kind == "control_change":
            self._control(msg.channel, msg.control, msg.value, time.monotonic() if now is None else now)
        elif kind == "note_on":
            self.feed(note_source(msg.channel, msg.note), msg.velocity / 127.0)
        elif kind == "note_off":
            self.feed(note_source(msg.channel, msg.note), 0.0)
        elif kind == "clock":
            self._clock(time.monotonic() if now is None else now)
        elif kind == "start":
            self._running = True
            self._pulses.clear()
            self.command("phase_reset")
        elif kind == "continue":
            self._running = True
        elif kind == "stop":
            self._running = False
            self._pulses.clear()

    def _control(self, channel: int, control: int, value: int, now: float) -> None:
        pair = (channel, control - 32)
        if 32 <= control < 64 and self._last_cc == pair and pair in self._msb \
                and now - self._last_cc_t <= FINE_WINDOW:
            # an LSB right after its MSB: a 14-bit controller
            self._fine.add(pair)
            self._last_cc = None
            self.feed(cc_source(channel, pair[1]), (self._msb[pair] * 128 + value) / 16383.0)
            return
        self._last_cc, self._last_cc_t = (channel, control), now
        if control < 32:
            self._msb[(channel, control)] = value
            if (channel, control) in self._fine:
                return  # wait for the LSB that completes it
        self.feed(cc_source(channel, control), value / 127.0)

    def _clock(self, now: float) -> None:
        pulses = self._pulses
        if pulses and now - pulses[-1] > CLOCK_TIMEOUT:
            pulses.clear()
        pulses.append(now)
        if not self._running or len(pulses) < pulses.maxlen:
            return
        span = pulses[-1] - pulses[0]
        if span <= 0:
            return
        bpm = 60.0 / span  # the last PPQN intervals make one beat
        if not TEMPO_RANGE[0] <= bpm <= TEMPO_RANGE[1]:
            return
        self.bpm = bpm
        self._since_sent += 1
        if abs(bpm - self._sent_bpm) > TEMPO_STEP or self._since_sent >= PPQN:
            self._sent_bpm, self._since_sent = bpm, 0
            self.command("tempo", round(bpm, 2))


#: rtmidi APIs tried in order: the platform's default (ALSA on Linux, CoreMIDI, Windows MM),
#: then JACK (Linux machines without an ALSA sequencer, e.g. containers, can run a JACK server).
BACKENDS = ("mido.backends.rtmidi", "mido.backends.rtmidi/UNIX_JACK")


@contextlib.contextmanager
def _quiet_stderr():
    """Hide what C libraries print on stderr while a backend is probed (ALSA's "cannot open
    /dev/snd/seq", JACK's "cannot connect to server"): our own one line says it better."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _mido():
    try:
        import mido
    except ImportError:
        raise ControlError("MIDI needs the midi extra: pip install 'latent-jockey[midi]' "
                           "(mido, python-rtmidi)") from None
    return mido


_backend = None


def backend():
    """The first MIDI backend that works here (cached); ControlError (one line) if none does."""
    global _backend
    if _backend is not None:
        return _backend
    mido = _mido()
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # never spawn a JACK server by probing
    reasons = []
    names = [os.environ["MIDO_BACKEND"]] if os.environ.get("MIDO_BACKEND") else list(BACKENDS)
    for name in names:
        try:
            with _quiet_stderr():
                be = mido.Backend(name, load=True)
                be.get_input_names()
        except Exception as exc:  # rtmidi: no ALSA sequencer, no JACK server, ...
            reasons.append(_reason(exc))
            continue
        _backend = be
        return be
    raise ControlError("no MIDI system available (" + "; ".join(reasons) + ")")


def list_inputs() -> list[str]:
    """The names of the MIDI inputs (ControlError, one line, if there is no MIDI backend)."""
    be = backend()
    with _quiet_stderr():
        return list(be.get_input_names())


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe_inputs() -> str:
    """``lj devices``' MIDI section: numbered inputs, or why there are none."""
    try:
        names = list_inputs()
    except ControlError as exc:
        return f"MIDI inputs: none, {exc}"
    if not names:
        return "MIDI inputs: none connected"
    return "MIDI inputs:\n" + "\n".join(f"  {i}  {n}" for i, n in enumerate(names))


def resolve_input(wanted: str, names: list[str]) -> str:
    """A port name from ``wanted``: an index into ``names``, an exact name or a unique substring
    (case-insensitive). ControlError naming the choices otherwise."""
    if wanted.isdigit() and int(wanted) < len(names):
        return names[int(wanted)]
    if wanted in names:
        return wanted
    hits = [n for n in names if wanted.lower() in n.lower()]
    if len(hits) == 1:
        return hits[0]
    choices = ", ".join(f"{i}: {n}" for i, n in enumerate(names)) or "none connected"
    why = "matches several" if hits else "not found"
    raise ControlError(f"MIDI input '{wanted}' {why} (inputs: {choices})")


class MidiInput:
    """Open MIDI inputs and feed their messages to ``controls`` (bindings, tempo commands).

    ``ports`` are names, indices or unique parts of names (see ``lj devices``). :meth:`start`
    raises :class:`ControlError` (one line) when MIDI or a port is not there; the live loop logs
    it and runs on. ``messages`` counts what arrived; a message that fails is counted in
    ``errors`` and logged, never raised into the backend's thread.
    """

    def __init__(self, controls, ports: list[str]):
        self.controls = controls
        self.wanted = list(ports)
        self.interpreter = MidiInterpreter(controls.bindings.feed, controls.queue)
        self._ports: list = []
        self.names: list[str] = []
        self.messages = 0
        self.errors = 0

    def start(self) -> None:
        be = backend()
        names = list_inputs()
        for wanted in self.wanted:
            name = resolve_input(str(wanted), names)
            try:
                port = be.open_input(name, callback=self._on_message)
            except Exception as exc:
                self.stop()
                raise ControlError(f"MIDI input '{name}' cannot be opened ({_reason(exc)})") from None
            self._ports.append(port)
            self.names.append(name)
            log.info("MIDI in: %s", name)

    def _on_message(self, msg) -> None:
        self.messages += 1
        try:
            self.interpreter.handle(msg)
        except Exception:
            self.errors += 1
            log.warning("MIDI message %s could not be handled", msg, exc_info=True)

    def stop(self) -> None:
        ports, self._ports = self._ports, []
        for port in ports:
            try:
                port.close()
            except Exception:
                pass
