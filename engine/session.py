"""Wires the stages together and owns the frame loops.

Both loops go through :meth:`Session.params_at`: the audio up to a sample position becomes
features (hop by hop), the mapping's per-hop state advances with them, and the mapping turns its
state into a :class:`~engine.frame.FrameParams` for that position. The offline loop
(:func:`render_song`) asks for positions ``i * sr // fps`` as fast as it can; the live loop
(:func:`run_live`) asks for whatever position playback or capture has reached. The same song and
mapping therefore give the same frames either way.

Both loops are pipelined: the generator works on frame N (on its own thread) while frame N-1 goes
through the shader chain and out.

Mappings, presets and generators given while the show runs load on a background thread
(:class:`BackgroundLoad`): one at a time, the latest request wins, and a load still running after
:data:`RELOAD_TIMEOUT_S` (mappings, presets) or :data:`GENERATOR_TIMEOUT_S` (models) is reported
as timed out and abandoned, so the next request starts at once and the last good state stays.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.audio.features import BLOCK_HOPS, FeatureExtractor, warm_up
from engine.audio.ring import HopReader
from engine.errors import GeneratorError, LJError, MappingError
from engine.frame import FrameParams
from engine.generators import load_generator
from engine.generators.runner import GeneratorRunner
from engine.mapping import compile_mapping, load_mapping
from engine.paths import DEFAULT_MAPPING, SHADER_DIR

log = logging.getLogger("lj.session")

HOP = 512
N_FFT = 2048
#: Seconds a mapping or preset load (read + compile) may take before it is abandoned.
RELOAD_TIMEOUT_S = 20.0
#: Seconds a generator load (read a model, build it, recompile the mapping) may take.
GENERATOR_TIMEOUT_S = 180.0
#: Abandoned loads still running (a thread cannot be stopped); beyond this many, new loads of
#: that kind are refused until one ends, so a file that hangs every load cannot pile up threads.
MAX_STUCK = 4


class ArrayReader:
    """An in-memory mono signal with the reading side of a :class:`RingBuffer`.

    Nothing is ever overwritten, and samples past the end read as silence (a render can run on
    after the song ends), so every position is "written".
    """

    total_written = sys.maxsize

    def __init__(self, mono: np.ndarray):
        self.mono = np.ascontiguousarray(mono, dtype=np.float32)

    def oldest(self) -> int:
        return 0

    def read(self, start: int, out: np.ndarray) -> bool:
        n = len(self.mono)
        end = start + len(out)
        if end <= n:
            out[:] = self.mono[start:end]
        else:
            avail = max(0, n - start)
            out[:avail] = self.mono[start:start + avail]
            out[avail:] = 0.0
        return True


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``[n, ch]`` or ``[n]`` float -> ``[n]`` float32 (mean of the channels)."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1) if samples.ndim == 2 else samples


class Analysis:
    """Brings features and the mapping's per-hop state up to an audio position.

    ``advance`` processes every complete hop that ends at or before ``pos`` (drained by a
    :class:`~engine.audio.ring.HopReader` in blocks of consecutive hops, whose spectra the
    extractor computes together); the features of each hop go straight to ``mapping.step_hop``.
    If a live ring has already overwritten hops not yet processed (the loop stalled for longer
    than the ring holds), they are skipped and counted in ``dropped_hops``.
    """

    def __init__(self, sr: int, hop: int = HOP, n_fft: int = N_FFT):
        self.sr, self.hop = sr, hop
        warm_up()   # compile the kernels here, not on the show's first hop
        self.extractor = FeatureExtractor(sr, hop=hop, n_fft=n_fft)
        self.hops = 0
        self.dropped_hops = 0
        self._hop_reader: HopReader | None = None

    @property
    def features(self) -> dict:
        return self.extractor.features

    def advance(self, reader, pos: int, mapping, controls: dict) -> None:
        """``reader`` is a :class:`RingBuffer` or an :class:`ArrayReader`."""
        hops = self._hop_reader
        if hops is None or hops.ring is not reader:
            hops = self._hop_reader = HopReader(reader, self.hop, start=self.hops * self.hop)
            dropped_before = 0
        else:
            dropped_before = hops.dropped
        step = mapping.step_hop
        for block in hops.blocks(pos, BLOCK_HOPS):
            for features in self.extractor.process_hops(block):
                step(features, controls)
        self.hops = hops.next_start // self.hop
        self.dropped_hops += (hops.dropped - dropped_before) // self.hop


def compile_file(path: str | Path | None, space, sr: int, hop: int = HOP):
    """Load and compile a mapping file (the default mapping when ``path`` is None)."""
    spec = load_mapping(Path(path) if path else DEFAULT_MAPPING)
    return compile_mapping(spec, space, sr, hop)


def check_uniform_targets(mapping, inputs: dict) -> None:
    """Every ``shader.<effect>.<input>`` target must name an input of the loaded chain."""
    for target, line in mapping.uniform_targets.items():
        name = target.removeprefix("shader.")
        if name not in inputs:
            known = ", ".join(sorted(inputs)) or "none"
            raise MappingError(f"unknown shader input '{target}' (the chain has: {known})",
                               getattr(mapping, "path", None), line)


def chain_inputs(chain: list[str], shader_dir: Path) -> dict[str, tuple]:
    """The ``"<effect>.<input>"`` names a shader chain offers, read from the ISF headers (no GL)."""
    from engine.render.isf import load_isf, value_inputs

    inputs = {}
    for name in chain:
        inputs.update(value_inputs(name, load_isf(Path(shader_dir) / f"{name}.fs")))
    return inputs


@dataclass
class FrameStats:
    """Frame timing for the overlay and the benchmarks (seconds).

    ``frame_times`` and ``gen_times`` keep the most recent frames only (between ``KEEP`` and
    ``2 * KEEP``), so a show that runs for weeks does not grow; ``frames`` and ``total_s`` count
    everything.
    """

    KEEP = 100_000

    frame_times: list = field(default_factory=list)
    gen_times: list = field(default_factory=list)
    frames: int = 0
    total_s: float = 0.0

    def add(self, frame_s: float, gen_s: float = 0.0) -> None:
        self.frames += 1
        self.total_s += frame_s
        for values, v in ((self.frame_times, frame_s), (self.gen_times, gen_s)):
            values.append(v)
            if len(values) > 2 * self.KEEP:
                del values[:self.KEEP]

    def fps(self, last: int = 60) -> float:
        """Frames per second over the ``last`` frames."""
        recent = self.frame_times[-last:]
        return len(recent) / sum(recent) if recent and sum(recent) > 0 else 0.0

    def mean_fps(self) -> float:
        """Frames per second over the whole run."""
        return self.frames / self.total_s if self.total_s > 0 else 0.0


class BackgroundLoad:
    """One background load at a time, the latest request wins, and none may block the next.

    :meth:`request` starts ``fn`` on a thread, or queues it while another runs (replacing any
    queued one). :meth:`take` (between frames) returns what the finished load's ``fn`` returned.
    A load still running ``timeout_s`` after it started is *abandoned*: ``timeout_error(key)``
    becomes its result, the request generation moves on (so its late result is discarded when
    it comes, after ``discard(result)`` may free it) and the queued request starts at once.
    ``fn`` must catch its own errors and return them as its result.
    """

    def __init__(self, name: str, timeout_s: float, timeout_error, discard=None):
        self.name, self.timeout_s, self.timeout_error = name, float(timeout_s), timeout_error
        self.discard = discard
        self._lock = threading.Lock()
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._key = None
        self._started = 0.0
        self._queued = None
        self._stuck: list[threading.Thread] = []
        self.pending = None

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def request(self, key, fn) -> None:
        self.expire()
        if self.busy():
            self._queued = (key, fn)  # the latest request wins
            return
        self._start(key, fn)

    def take(self):
        """The result of the finished load, or None; a queued request starts now."""
        self.expire()
        with self._lock:
            pending, self.pending = self.pending, None
        if self._queued is not None and not self.busy():
            (key, fn), self._queued = self._queued, None
            self._start(key, fn)
        return pending

    def expire(self) -> None:
        """Abandon the running load if it has run past ``timeout_s``."""
        if not self.busy() or time.monotonic() - self._started <= self.timeout_s:
            return
        with self._lock:
            self._generation += 1
            self._stuck.append(self._thread)
            self._thread = None
            self.pending = self._key, self.timeout_error(self._key)
        log.warning("%s load of %s timed out after %g s; abandoned", self.name, self._key,
                  self.timeout_s)

    def _start(self, key, fn) -> None:
        self._stuck = [t for t in self._stuck if t.is_alive()]
        if len(self._stuck) >= MAX_STUCK:
            with self._lock:
                self.pending = key, LJError(f"{key}: not loaded: {len(self._stuck)} earlier "
                                            f"{self.name} loads are still stuck")
            return
        with self._lock:
            self._generation += 1
            generation = self._generation

        def work():
            result = fn()
            with self._lock:
                current = generation == self._generation
                if current:
                    self.pending = result
            if not current:  # abandoned: too late, dropped
                log.warning("%s load of %s finished after it was abandoned; ignored", self.name,
                            key)
                if self.discard is not None:
                    self.discard(result)

        self._key, self._started = key, time.monotonic()
        self._thread = threading.Thread(target=work, name=f"lj-{self.name}-loader", daemon=True)
        self._thread.start()


class Session:
    """The engine's stages for one audio stream: analysis, mapping, generator, renderer.

    Parameters
    ----------
    sr:
        Sample rate of the audio that will be analysed.
    mapping_path:
        A mapping file, or None for the default mapping.
    generator:
        Overrides the mapping's ``generator`` when given.
    size:
        Generator resolution ``(h, w)`` for the built-in generators; a model has its own, and
        ``self.size`` is the resolution of the generator actually loaded.
    """

    def __init__(self, sr: int, mapping_path: str | Path | None = None,
                 generator: str | None = None, size: tuple[int, int] = (512, 512),
                 device: str | None = None, threaded: bool = True):
        self.sr = sr
        self.size = size
        self.mapping_path = Path(mapping_path) if mapping_path else DEFAULT_MAPPING
        # The generator decides the latent space, so it is built first; the mapping may name one.
        spec = load_mapping(self.mapping_path)
        gen_name = generator or getattr(spec, "generator", None) or "builtin:cppn"
        self.generator = load_generator(gen_name, size)
        self.generator_spec = gen_name
        self.size = tuple(self.generator.resolution)
        self.device, self.threaded = device, threaded
        self.space = self.generator.latent_space()
        self.mapping = compile_mapping(spec, self.space, sr, HOP)
        self.analysis = Analysis(sr)
        self.runner = GeneratorRunner(self.generator, device=device, threaded=threaded)
        self.renderer = None
        self._audio: dict[str, float] = {}  # the audio uniforms, updated in place each frame
        self._heard = None                  # (reader, position) of the last params_at
        self.mapping_loads = BackgroundLoad("mapping", RELOAD_TIMEOUT_S, lambda path: MappingError(
            f"loading timed out after {self.mapping_loads.timeout_s:g} s; abandoned, keeping the "
            "last good mapping", path))
        self.generator_loads = BackgroundLoad("generator", GENERATOR_TIMEOUT_S, lambda spec: (
            GeneratorError(f"{spec}: loading timed out after {self.generator_loads.timeout_s:g} "
                           "s; abandoned, keeping the current generator")),
            discard=_close_runner)
        self.last_error: str | None = None
        # show state (engine/show.py): the last frame's params, a held latent, preset uniforms
        self.last_params: FrameParams | None = None
        self.latent_hold = None
        self.fixed_uniforms: dict[str, float] = {}

    # -- the per-position core -----------------------------------------------------------------
    def params_at(self, reader, pos: int, controls: dict | None = None) -> FrameParams:
        """Features and mapping state up to sample ``pos``, then that frame's parameters."""
        self.analysis.advance(reader, pos, self.mapping, controls or {})
        self._heard = (reader, pos)  # the audio shaders' waveform/spectrum end here
        if getattr(self.mapping, "faded", False):   # a preset's crossfade is over
            self.mapping = self.mapping.new
        params = self.mapping.frame(pos / self.sr)
        if self.latent_hold is not None:
            params = self.latent_hold.apply(params)
            if self.latent_hold.released:
                self.latent_hold = None
        self.last_params = params
        return params

    # -- rendering ------------------------------------------------------------------------------
    def attach_renderer(self, ctx, output_size: tuple[int, int]):
        """Create the shader chain on ``ctx`` (output size ``(w, h)``) and check the mapping against it."""
        from engine.render.pipeline import Renderer

        h, w = self.size
        self.renderer = Renderer(ctx, (w, h), output_size, self.mapping.shader_chain, SHADER_DIR)
        from engine.render.gpu_upload import make_uploader  # CUDA-GL interop / PBOs / plain

        self.renderer.uploader = make_uploader(ctx, self.runner)
        for err in self.renderer.errors:
            log.error("%s", err)
        check_uniform_targets(self.mapping, self.renderer.inputs)
        return self.renderer

    def draw(self, image: np.ndarray, params: FrameParams) -> None:
        """Run the shader chain on ``image`` with the frame's uniforms and the audio uniforms."""
        uniforms = params.uniforms
        if self.fixed_uniforms:   # a preset's shader inputs the mapping does not route
            uniforms = {**self.fixed_uniforms, **uniforms}
        if self._heard is not None and self.renderer.audio_needs:
            from engine.render.audiotex import read_window

            self.renderer.feed_audio(read_window(*self._heard), self.sr)
        self.renderer.render(image, uniforms, params.t,
                             audio_uniforms(self.analysis.features, self._audio))

    # -- live reloads ---------------------------------------------------------------------------
    @property
    def _pending_mapping(self):
        """The finished mapping load not yet applied (None while none is)."""
        return self.mapping_loads.pending

    def request_reload(self, path: str | Path | None = None, preset=None) -> None:
        """Compile a mapping file off the frame loop; :meth:`apply_reload` swaps it in later.

        ``preset`` (an :class:`engine.presets.Preset`) compiles its mapping with its keyframes,
        chain and scene, and swaps it in with its crossfade (see engine/show.py). A load that
        takes longer than ``mapping_loads.timeout_s`` (:data:`RELOAD_TIMEOUT_S`) is abandoned."""
        path = Path(path) if path else self.mapping_path

        def work():
            try:
                if preset is not None:
                    from engine.show import compile_preset

                    result = compile_preset(preset, self.space, self.sr, HOP)
                else:
                    result = compile_file(path, self.space, self.sr)
                return (path, result, preset)
            except LJError as exc:
                return (path, exc)
            except Exception as exc:  # never let a bad file reach the frame loop as a crash
                return (path, MappingError(f"cannot load mapping: {exc}", path))

        self.mapping_loads.request(path, work)

    def apply_reload(self) -> bool:
        """Between frames: swap in a freshly compiled mapping, or report why not. True if swapped."""
        pending = self.mapping_loads.take()
        if pending is None:
            return False
        path, result, *rest = pending
        preset = rest[0] if rest else None
        if isinstance(result, Exception):
            self.last_error = str(result)
            log.error("mapping not loaded, keeping the last good one: %s", result)
            return False
        if self.renderer is not None:
            old_chain = list(self.mapping.shader_chain)
            if result.shader_chain != old_chain:
                self.renderer.set_chain(result.shader_chain)
            try:
                check_uniform_targets(result, self.renderer.inputs)
            except MappingError as exc:
                if result.shader_chain != old_chain:
                    self.renderer.set_chain(old_chain)
                self.last_error = str(exc)
                log.error("mapping not loaded, keeping the last good one: %s", exc)
                return False
        result.restore(self.mapping.state())
        if preset is not None:
            from engine.show import arrive

            result = arrive(self, result, preset)
        self.mapping = result
        self.mapping_path = path
        self.last_error = None
        log.info("mapping loaded: %s", path)
        return True

    # -- generator hot-swap --------------------------------------------------------------------
    @property
    def _pending_generator(self):
        return self.generator_loads.pending

    def request_generator(self, spec: str) -> None:
        """Load generator ``spec`` on a loader thread (model, latent space, the current mapping
        recompiled for it, a runner); :meth:`apply_generator` swaps it in between frames. A load
        that takes longer than ``generator_loads.timeout_s`` (:data:`GENERATOR_TIMEOUT_S`) is
        abandoned."""
        req_size = self.size

        def work():
            try:
                gen = load_generator(spec, req_size)
                space = gen.latent_space()
                mapping = compile_file(self.mapping_path, space, self.sr)
                runner = GeneratorRunner(gen, device=self.device, threaded=self.threaded)
                return (spec, (gen, space, mapping, runner))
            except LJError as exc:
                return (spec, exc)
            except Exception as exc:  # a bad model must never reach the frame loop as a crash
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return (spec, GeneratorError(f"{spec}: cannot load: {msg}"))

        self.generator_loads.request(spec, work)

    def apply_generator(self) -> bool:
        """Between frames: swap in a loaded generator, or log why not and keep the current one.
        True if swapped (the caller should re-declare parameters and drop the previous frame)."""
        pending = self.generator_loads.take()
        if pending is None:
            return False
        spec, result = pending
        if isinstance(result, Exception):
            self.last_error = str(result)
            log.error("generator not loaded, keeping the current one: %s", result)
            return False
        gen, space, mapping, runner = result
        mapping.restore(self.mapping.state())
        old_runner = self.runner
        self.generator, self.space, self.mapping, self.runner = gen, space, mapping, runner
        self.generator_spec = spec
        new_size = tuple(gen.resolution)
        if self.renderer is not None and new_size != self.size:
            ctx, out_size = self.renderer.ctx, self.renderer.output_size
            self.renderer.release()
            self.size = new_size
            self.attach_renderer(ctx, out_size)
        self.size = new_size
        old_runner.close()
        self.last_error = None
        log.info("generator loaded: %s (%dx%d)", spec, new_size[1], new_size[0])
        return True

    def close(self) -> None:
        self.runner.close()


def _close_runner(result) -> None:
    """Free what a generator load that came too late built (its runner's thread)."""
    loaded = result[1] if isinstance(result, tuple) and len(result) == 2 else None
    if isinstance(loaded, tuple) and len(loaded) == 4:
        try:
            loaded[3].close()
        except Exception as exc:  # freeing must not raise on the loader thread
            log.debug("abandoned generator not closed: %s", exc)


AUDIO_UNIFORMS = ("bass", "mid", "treb", "bass_att", "mid_att", "treb_att", "level", "flux", "onset")


def audio_uniforms(features: dict, out: dict | None = None) -> dict[str, float]:
    """The scalar features every shader may read as ``lj_<name>`` uniforms (into ``out``, reused
    from frame to frame, when given)."""
    out = {} if out is None else out
    for k in AUDIO_UNIFORMS:
        out[k] = float(features.get(k, 0.0))
    for k, v in features.items():  # every other scalar feature too (band0..band7, beat, ...)
        if isinstance(v, (float, int, np.floating, np.integer)):
            out[k] = float(v)
    return out
