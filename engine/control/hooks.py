"""The control stage's few touch points in the live loop, kept here so ``live.py`` stays short.

:class:`LiveControl` bundles what the loop needs from the control stage beyond the OSC server:
direct overrides (:mod:`engine.control.direct`), learned bindings (:mod:`engine.control.learn`),
MIDI input (:mod:`engine.control.midi`), Zeroconf advertisement and queued commands for the
audio stage (tempo from MIDI clock). The loop calls :meth:`LiveControl.on_mapping` after the
mapping or shader chain changed, :meth:`LiveControl.frame` once per frame, and :meth:`close`.
"""

from __future__ import annotations

import logging

from engine.control.direct import DirectControl

log = logging.getLogger("lj.control")


class LiveControl:
    """Per-show control plumbing around one :class:`~engine.control.state.Controls`."""

    def __init__(self, controls):
        self.controls = controls
        self.direct = DirectControl(controls)
        self.bindings = controls.bindings
        self.midi = None
        self.advertiser = None

    def on_mapping(self, session) -> None:
        """After start and after every mapping (or preset) reload: declare the new targets and
        re-apply the bindings (the mapping's ``[bindings]`` and its learned sidecar)."""
        mapping = getattr(session, "mapping", None)
        self.bindings.attach(getattr(session, "mapping_path", None),
                             getattr(mapping, "bindings", None) or {})
        renderer = getattr(session, "renderer", None)
        self.direct.declare(renderer.inputs if renderer is not None else {})

    # -- keys and overlay ---------------------------------------------------------------------

    def learn_targets(self) -> list[str]:
        """What the ``l`` key cycles through: parameters, direct targets, triggers."""
        from engine.control.space import FIXED, WRITE

        fixed = {i.address for i in FIXED}
        return [i.address for i in self.controls.describe()
                if i.access & WRITE and i.address not in fixed]

    def key(self, name: str) -> bool:
        """Handle a key of the window; True if it was the control stage's (``l``: learn).

        Each press of ``l`` puts the next target in learn mode (parameters, then shader inputs,
        truncation, noise, triggers); after the last one it leaves learn mode.
        """
        if name != "l":
            return False
        targets = self.learn_targets()
        current = self.bindings.learning
        if current in targets and targets.index(current) + 1 < len(targets):
            self.bindings.learn(targets[targets.index(current) + 1])
        elif current is None and targets:
            self.bindings.learn(targets[0])
        else:
            self.bindings.cancel()
        return True

    def overlay_lines(self) -> list[str]:
        """Lines for the ``h`` overlay while learning, or right after a control was learned."""
        learning = self.bindings.learning
        if learning is not None:
            return [f"LEARN {learning}: move a control (l: next target)"]
        return []

    def start(self, midi: list[str] | None = None) -> None:
        """Open what the show asked for (MIDI inputs). A failure is one line; the show runs on."""
        if midi:
            from engine.control.midi import MidiInput
            from engine.errors import ControlError

            self.midi = MidiInput(self.controls, midi)
            try:
                self.midi.start()
            except ControlError as exc:
                log.warning("%s; running without MIDI", exc)
                self.midi = None

    def advertise(self, osc_port: int, oscquery_port: int | None, host: str) -> None:
        """Announce the OSC and OSCQuery ports with Zeroconf (on a thread; failure = one line)."""
        try:
            from engine.control.discovery import Advertiser
        except ImportError as exc:  # pragma: no cover - zeroconf is a dependency
            log.warning("no Zeroconf advertisement (%s)", exc)
            return
        self.advertiser = Advertiser(osc_port, oscquery_port, host)
        self.advertiser.start()

    def commands(self, commands, session) -> None:
        """Queued commands for the audio stage: MIDI clock tempo and Start (beat one now).

        The tracker's steering API (contract C3) is used through ``getattr``, so a tracker
        without it is left alone.
        """
        if not commands:
            return
        extractor = getattr(getattr(session, "analysis", None), "extractor", None)
        tracker = getattr(extractor, "beat", None)
        for cmd in commands:
            try:
                if cmd[0] == "tempo" and hasattr(tracker, "set_tempo"):
                    tracker.set_tempo(float(cmd[1]))
                elif cmd[0] == "phase_reset" and hasattr(tracker, "reset_phase"):
                    try:
                        tracker.reset_phase()
                    except TypeError:  # reset_phase(t) (contract C3's signature)
                        tracker.reset_phase(tracker.now())
            except (ValueError, TypeError, IndexError) as exc:
                log.warning("control command %r ignored: %s", cmd[:2], exc)

    def frame(self, params, snap, session=None) -> None:
        """Apply the held direct overrides to this frame's parameters and publish what is in effect."""
        self.direct.apply(params, snap.direct)
        self.direct.publish(params)

    def close(self) -> None:
        if self.advertiser is not None:
            self.advertiser.stop()
            self.advertiser = None
        if self.midi is not None:
            self.midi.stop()
            self.midi = None
