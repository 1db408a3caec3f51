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

    def on_mapping(self, session) -> None:
        """After start and after every mapping (or preset) reload: declare the new targets."""
        renderer = getattr(session, "renderer", None)
        self.direct.declare(renderer.inputs if renderer is not None else {})

    def frame(self, params, snap, session=None) -> None:
        """Apply the held direct overrides to this frame's parameters and publish what is in effect."""
        self.direct.apply(params, snap.direct)
        self.direct.publish(params)

    def close(self) -> None:
        pass
