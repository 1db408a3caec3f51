"""Show commands: what scene keys, presets, latent keyframes and cue lists do to a running
:class:`~engine.session.Session`.

The live loop hands every key press to :meth:`Show.key` and every queued OSC command
(``/lj/scene``, ``/lj/preset/*``, ``/lj/cue/*``, ``/lj/latent/*``; see docs/osc.md) to
:meth:`Show.command`, and calls :meth:`Show.poll` once per frame (the cue list). Nothing here
blocks the frame loop: a preset's mapping compiles on the session's loader thread and arrives
with a crossfade; scene switches only hand state over (every scene is compiled with its file).
A bad name or file is logged (and shown in the overlay) and the show goes on.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from engine.cues import CueTimer, load_cue_file
from engine.errors import LJError
from engine.mapping import load_mapping
from engine.mapping.compile import Mapping
from engine.mapping.scenes import FadingMapping, LatentHold
from engine.mapping.spec import LATENT_DIR, Crossfade, CueSpec
from engine.presets import Preset, load_latent, load_preset, save_latent, save_preset
from engine.writegate import WriteGate, check_folder

log = logging.getLogger("lj.show")

#: Seconds a recalled latent takes to fade in (and out when let go).
LATENT_FADE_S = 2.0


def compile_preset(preset: Preset, space, sr: int, hop: int):
    """A preset's mapping, compiled with its shader chain, keyframes and scene (loader thread)."""
    from engine.mapping.compile import compile_mapping

    spec = load_mapping(preset.mapping)
    if preset.chain:
        spec.shader_chain = list(preset.chain)
    m = compile_mapping(spec, space, sr, hop)
    scenes = getattr(m, "names", None)
    if preset.scene is not None and scenes is not None and preset.scene not in scenes:
        raise LJError(f"preset {preset.name!r}: its mapping has no scene {preset.scene!r}")
    if preset.keyframes is not None:
        if scenes is not None:
            i = scenes.index(preset.scene) if preset.scene is not None else m.index
            m.scenes[i] = Mapping(spec.scenes[i], space, sr, hop, keyframes=preset.keyframes)
            m.active = m.scenes[m.index]
        else:
            m = Mapping(spec, space, sr, hop, keyframes=preset.keyframes)
    return m


def arrive(session, mapping, preset: Preset):
    """Between frames, as a compiled preset replaces ``session.mapping``: go to its scene,
    set its fixed shader inputs and crossfade from the current picture."""
    if preset.scene is not None and hasattr(mapping, "switch"):
        mapping.switch(preset.scene, crossfade=Crossfade(0.0))
    routed = set(mapping.uniform_targets)
    session.fixed_uniforms = {k: v for k, v in preset.inputs.items() if k not in routed}
    if preset.crossfade > 0.0:
        return FadingMapping(session.mapping, mapping, preset.crossfade, session.space.w_avg)
    return mapping


class Show:
    """Scene, preset, latent and cue commands for one session.

    ``presets_dir``: where presets are saved and looked up (default ``./presets``);
    ``latents_dir``: where latents are saved (default ``latents/`` beside the mapping file, the
    folder mapping files read ``keyframes = { latents = [...] }`` from); ``cues``: a cue file.
    ``overwrite`` (``--presets-overwrite``): a save may replace a preset or latent of the same
    name; without it such a save is refused. Saves go through a :class:`WriteGate` each (rate and
    count bounded; refusals counted and logged once per interval, never raised).
    """

    def __init__(self, session, controls=None, presets_dir: str | Path | None = None,
                 latents_dir: str | Path | None = None, cues: str | Path | CueSpec | None = None,
                 overwrite: bool = False):
        self.session = session
        self.controls = controls
        self.presets_dir = check_folder(presets_dir or "presets", "--presets")
        self._latents_dir = check_folder(latents_dir, "latents") if latents_dir else None
        self.overwrite = bool(overwrite)
        self.preset_gate = WriteGate("preset")
        self.latent_gate = WriteGate("latent")
        spec = load_cue_file(cues) if isinstance(cues, (str, Path)) else cues
        self.cues = CueTimer(spec) if spec is not None else None
        self._cue_clock = spec.clock if spec is not None else "audio"
        if self.cues is not None and spec.autostart:
            self.cues.start(self._now())

    @property
    def latents_dir(self) -> Path:
        if self._latents_dir is not None:
            return self._latents_dir
        return Path(self.session.mapping_path).resolve().parent / LATENT_DIR

    def _now(self) -> float:
        if self._cue_clock == "wall":
            return time.monotonic()
        return float(self.session.mapping.time)

    def _report(self, exc: Exception) -> None:
        self.session.last_error = str(exc)
        log.error("%s", exc)

    # -- inputs -----------------------------------------------------------------------------------
    def key(self, name: str) -> bool:
        """Keys 1-9 pick a scene, n/p the next/previous one, F1-F12 recall the presets named
        ``f1``..``f12``. True if the key was ours."""
        if len(name) in (2, 3) and name[0] == "f" and name[1:].isdigit():
            try:
                self.load_preset(name)
            except LJError as exc:
                self._report(exc)
        elif len(name) == 1 and name in "123456789":
            self.scene(int(name) - 1)
        elif name == "n":
            self.scene("next")
        elif name == "p":
            self.scene("prev")
        else:
            return False
        return True

    def command(self, address: str, arg) -> None:
        """One queued OSC command (``engine.control.space.COMMANDS``)."""
        try:
            if address == "/lj/scene":
                self.scene(arg - 1 if isinstance(arg, int) else arg)
            elif address == "/lj/scene/next":
                self.scene("next")
            elif address == "/lj/scene/prev":
                self.scene("prev")
            elif address == "/lj/preset/save":
                self.save_preset(arg)
            elif address == "/lj/preset/load":
                self.load_preset(arg)
            elif address == "/lj/cue/start":
                self.start_cues()
            elif address == "/lj/cue/stop":
                self.stop_cues()
            elif address == "/lj/latent/save":
                self.save_latent(arg)
            elif address == "/lj/latent/recall":
                self.recall_latent(arg)
        except LJError as exc:
            self._report(exc)

    def poll(self) -> None:
        """Once per frame: fire the cue file's due cues."""
        if self.cues is not None and self.cues.running:
            for cue in self.cues.due(self._now()):
                try:
                    if cue.kind == "preset":
                        self.load_preset(cue.value)
                    else:
                        v = cue.value
                        self.scene(int(v) - 1 if isinstance(v, str) and v.isdigit() else v)
                except LJError as exc:
                    self._report(exc)

    # -- scenes -----------------------------------------------------------------------------------
    def scene(self, target) -> bool:
        m = self.session.mapping
        if not hasattr(m, "switch"):
            self._report(LJError(f"the mapping {Path(self.session.mapping_path).name} has no "
                                 "scenes (add [[scene]] tables)"))
            return False
        if not m.switch(target):
            self._report(LJError(f"no scene {target!r} (scenes: {', '.join(m.names)})"))
            return False
        return True

    # -- presets ----------------------------------------------------------------------------------
    def current_preset(self, name: str) -> Preset:
        s = self.session
        m = s.mapping
        params = dict(m.values())
        values = {k[6:]: float(v) for k, v in params.items() if k.startswith("param.")}
        last = s.last_params
        return Preset(name=name, mapping=str(Path(s.mapping_path).resolve()),
                      scene=getattr(m, "scene", None), keyframes=np.array(m.keyframes),
                      params=values, chain=list(m.shader_chain),
                      inputs=dict(last.uniforms) if last is not None else {})

    def save_preset(self, name: str) -> Path | None:
        """Save the show's state as preset ``name``; None (counted, logged once per interval,
        the last error set) when refused: a bad or existing name, too many, too fast."""
        return self._save(self.preset_gate, "preset",
                          lambda: save_preset(self.presets_dir, self.current_preset(name),
                                              overwrite=self.overwrite))

    def _save(self, gate: WriteGate, what: str, write) -> Path | None:
        if not gate.admit():
            self.session.last_error = f"{what} not saved: {gate.last_refusal}"
            return None
        try:
            path = write()
        except LJError as exc:
            gate.refuse(str(exc))
            self.session.last_error = str(exc)
            return None
        gate.wrote()
        log.info("%s saved: %s", what, path)
        return path

    def load_preset(self, name: str) -> None:
        preset = load_preset(self.presets_dir, name)
        if self.controls is not None:      # parameters glide there with the controls' smoothing
            for k, v in preset.params.items():
                self.controls.set_param(k, v)
        self.session.request_reload(preset.mapping, preset=preset)
        log.info("preset %s: loading %s", name, preset.mapping)

    # -- latents ----------------------------------------------------------------------------------
    def save_latent(self, name: str) -> Path | None:
        last = self.session.last_params
        if last is None:
            self._report(LJError("no frame yet: nothing to save"))
            return None
        w_plus = last.w_plus
        return self._save(self.latent_gate, "latent",
                          lambda: save_latent(self.latents_dir, name, w_plus,
                                              overwrite=self.overwrite))

    def recall_latent(self, name: str) -> None:
        s = self.session
        if not name:
            if s.latent_hold is not None:
                s.latent_hold.release()
            return
        w = load_latent(self.latents_dir, name, s.space.num_layers, s.space.w_dim)
        s.latent_hold = LatentHold(w, LATENT_FADE_S, s.space.w_avg)

    # -- cues -------------------------------------------------------------------------------------
    def start_cues(self) -> None:
        """Start the cue file from its top, or the mapping's own [[cue]] list."""
        if self.cues is not None:
            self.cues.start(self._now())
            return
        timer = getattr(self.session.mapping, "cues", None)
        if isinstance(timer, CueTimer) and timer.spec.cues:
            timer.start(self.session.mapping.time)
        else:
            self._report(LJError("no cue list: give lj run --cues FILE or [[cue]] tables in a "
                                 "scene file"))

    def stop_cues(self) -> None:
        if self.cues is not None:
            self.cues.stop()
        timer = getattr(self.session.mapping, "cues", None)
        if isinstance(timer, CueTimer):
            timer.stop()
