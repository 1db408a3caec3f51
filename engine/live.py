"""The live loop: an audio source in, a window (or an offscreen target) out, OSC around it.

One iteration, on the main thread (GLFW and the GL context live here)::

    keys -> controls snapshot -> mapping reloads -> audio position -> features + step_hop (per hop)
      -> frame(t) -> submit frame N to the generator -> draw frame N-1 -> overlay -> swap
      -> OSC feature bundle out -> wait for frame N

Nothing in here blocks on input: OSC arrives on its own thread into ``Controls``, mapping files are
compiled on a loader thread and swapped in between frames, the audio callback only fills a ring.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from engine.audio.steer import TempoSteering
from engine.control import Controls, OscQueryServer, OscSender, OscServer
from engine.control.hooks import LiveControl
from engine.errors import ControlError
from engine.paths import find_mapping
from engine.session import FrameStats, Session
from engine.show import Show
from engine.writegate import WriteGate, check_folder

log = logging.getLogger("lj.live")

LATE_MIN_S = 0.05   # never hold a frame for a generator that is late by less than this
LATE_FACTOR = 4.0   # ... or by less than this many of its recent frame times

OVERLAY_FEATURES = ("level", "bass", "mid", "treb", "bass_att", "flux", "onset_low", "centroid")


@dataclass
class LiveOptions:
    """What ``lj run`` was asked for."""

    mapping: str | None = None
    generator: str | None = None
    size: int = 512
    window_size: int | None = None
    output_size: tuple[int, int] | None = None  # (w, h) of the shader chain; None: the size
    fit: str = "letterbox"                      # generator → output → screen: letterbox|crop|stretch
    fullscreen: bool = False
    monitor: int | None = None
    vsync: bool = True
    headless: bool = False
    osc_host: str = "127.0.0.1"
    osc_port: int | None = 9000
    osc_out: list[tuple[str, int]] | None = None
    osc_allow: list[str] | None = None
    osc_lan_admin: bool = False        # LAN peers may also load files by path, swap models, record
    show_dirs: list[str] = field(default_factory=list)  # more folders remote loads may name
    osc_smoothing: float = 0.06
    oscquery_port: int | None = None  # None: no OSCQuery; 0: any free port
    link: bool = False                 # follow an Ableton Link session (engine.audio.steer)
    max_frames: int | None = None
    max_seconds: float | None = None
    hide_cursor: bool = False
    stills_dir: str = "stills"
    watch: bool = True
    overlay: bool = False
    cues: str | None = None             # a cue file (engine/cues.py)
    presets_dir: str | None = None      # default ./presets
    presets_overwrite: bool = False     # a preset/latent save may replace one of the same name
    latents_dir: str | None = None      # default latents/ beside the mapping file
    record: str | None = None        # record the output (and audio) to this file from the start
    record_dir: str = "recordings"   # where key r / /lj/record/start without a path record to
    record_fps: float = 30.0
    outputs: list[str] | None = None  # ndi:NAME, v4l2:/dev/videoN, ... (engine/render/outputs.py)
    resolution_budget: bool = True  # render below --size when the generator is too slow
    target_fps: float = 60.0        # the frame rate the resolution budget aims for
    midi: list[str] | None = None  # MIDI inputs (names or indices); None: no MIDI
    zeroconf: bool = True  # advertise OSC and OSCQuery on the LAN (mDNS)
    schedule: object | None = None   # engine.schedule.Schedule: blank and asleep outside its hours
    clock: object | None = None      # () -> datetime for the schedule (default: datetime.now)
    health_monitor: object | None = None  # engine.health.Health: gets the state once a second


class StopFlag:
    """Set by SIGTERM/SIGINT handlers or a test; checked once per frame."""

    def __init__(self):
        self.event = threading.Event()

    def __call__(self, *_):
        self.event.set()

    @property
    def set(self) -> bool:
        return self.event.is_set()


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def overlay_lines(stats: FrameStats, session: Session, gen_ms: float) -> list[str]:
    """The text of the ``h`` overlay."""
    fps = stats.fps()
    frame_ms = 1000.0 / fps if fps else 0.0
    feats = session.analysis.features
    lines = [f"{fps:5.1f} fps   frame {frame_ms:5.1f} ms   generator {gen_ms:5.1f} ms",
             f"mapping: {getattr(session.mapping, 'name', '') or session.mapping_path.name}"]
    row = []
    for name in OVERLAY_FEATURES:
        row.append(f"{name} {float(feats.get(name, 0.0)):5.2f}")
        if len(row) == 4:
            lines.append("  ".join(row))
            row = []
    if row:
        lines.append("  ".join(row))
    if session.last_error:
        lines.append("! " + session.last_error[:110])
    if getattr(session.runner, "budget_note", None):
        lines.append(session.runner.budget_note[:110])
    return lines


def run_live(source, opts: LiveOptions, stop: StopFlag | None = None,
             health: dict | None = None) -> FrameStats:
    """Run until the window closes, the source ends, ``stop`` is set or a limit is reached.

    ``source`` is a started-or-not audio source with ``.ring``, ``.position``, ``.sample_rate``,
    ``.start()``, ``.stop()`` and optionally ``.finished``. ``health`` adds entries to the state
    published once a second (``/lj/get /lj/state/...``, OSCQuery, OSC out), e.g. the restart count
    of a supervisor.
    """
    from engine.control.osc import RECORD_START, RECORD_STOP
    from engine.control.space import COMMANDS as SHOW_COMMANDS
    from engine.render.context import Window, headless_context
    from engine.render.recorder import Recording

    stop = stop or StopFlag()
    controls = Controls(smoothing=opts.osc_smoothing)
    server = query = sender = session = window = ctx = overlay = steering = None
    live_control = LiveControl(controls)
    prev = None
    source_started = False
    stats = FrameStats()
    recording = Recording(opts.record_dir, opts.record_fps)   # LJError: --record-dir is a file
    still_gate = WriteGate("still")
    check_folder(opts.stills_dir, "--stills")
    outputs = None
    try:
        if opts.osc_port is not None:
            server = OscServer(controls, host=opts.osc_host, port=opts.osc_port,
                               allow=opts.osc_allow, lan_admin=opts.osc_lan_admin)
            server.start()  # a busy port fails here, before anything opens
        sender = OscSender(targets=opts.osc_out) if opts.osc_out else None
        live_control.start(midi=opts.midi)
        mapping_path = find_mapping(opts.mapping) if opts.mapping else None
        session = Session(source.sample_rate, mapping_path, opts.generator,
                          (opts.size, opts.size))
        declare_params(controls, session.mapping)
        if server is not None:  # remote loads stay inside the show's folders
            from engine.control.access import ShowFolders
            server.folders = ShowFolders.for_show(session.mapping_path, opts.show_dirs)
        controls.declare_trigger("still")
        show = Show(session, controls, opts.presets_dir, opts.latents_dir, opts.cues,
                    overwrite=opts.presets_overwrite)
        controls.declare_trigger("hold")  # keep the frame on screen as the transition's start
        if server is not None and opts.oscquery_port is not None:
            from engine.control.access import AllowList

            query = OscQueryServer(controls, osc_port=server.port, host=opts.osc_host,
                                   port=opts.oscquery_port, allow=AllowList(opts.osc_allow))
            try:
                query.start()
                log.info("OSCQuery on http://%s:%d/", opts.osc_host, query.port)
            except ControlError as exc:  # discovery is a convenience: the show goes on
                log.warning("%s; running without OSCQuery", exc)
                query = None
        if server is not None and opts.zeroconf:
            live_control.advertise(server.port, query.port if query else None, opts.osc_host)
        if opts.headless:
            ctx = headless_context()
        else:
            out_size = opts.output_size or (opts.size, opts.size)
            win_size = (opts.window_size,) * 2 if opts.window_size else out_size
            window = Window(win_size, title="Latent Jockey", fullscreen=opts.fullscreen,
                            monitor=opts.monitor, vsync=opts.vsync)
            if opts.hide_cursor:
                window.hide_cursor()
            ctx = window.ctx
        session.attach_renderer(ctx, opts.output_size or (opts.size, opts.size))
        session.renderer.fit = opts.fit
        if opts.resolution_budget:  # render smaller when the generator cannot hold the rate
            session.runner.enable_budget(opts.target_fps)
        if opts.outputs:
            from engine.render.outputs import Outputs

            outputs = Outputs(opts.outputs, session.renderer.output_size)
        live_control.on_mapping(session)
        if window is not None:
            from engine.render.overlay import Overlay

            overlay = Overlay(ctx)
        show_overlay = opts.overlay
        watched = session.mapping_path
        watched_mtime = _mtime(watched)
        steering = TempoSteering(link=opts.link)
        source.start()
        source_started = True
        if opts.record:
            recording.start_file(opts.record, session.renderer, source)
        if opts.health_monitor is not None:  # /health judges fps against this
            opts.health_monitor.target_fps = opts.target_fps
        log.info("running: %s, generator %dx%d, %s", session.mapping_path.name, session.size[1],
                 session.size[0], "headless" if window is None else "window")
        started = time.perf_counter()
        frame_no = 0
        gen_ema = 0.0
        want_still = False
        faults = FaultLog()
        published = None
        sleeping = False
        clock = opts.clock or datetime.now
        while not stop.set:
            t0 = time.perf_counter()
            if opts.schedule is not None:  # outside the hours: a black screen and a cheap nap
                on = opts.schedule.is_on(clock())
                if not on or sleeping:
                    sleeping = schedule_step(on, sleeping, opts.schedule, clock, source, window,
                                             stop)
                    if sleeping:
                        if published is None or t0 - published >= 1.0:
                            published = t0
                            publish_state(controls, sender, opts.health_monitor, health, session,
                                          session.runner, source, stats, faults, started,
                                          frame_no, sleeping)
                        if (opts.max_seconds is not None
                                and time.perf_counter() - started >= opts.max_seconds):
                            break
                        continue
            if window is not None:
                for key in window.poll():
                    if key in ("escape", "q"):
                        stop()
                    elif key == "f":
                        window.toggle_fullscreen()
                    elif key == "h":
                        show_overlay = not show_overlay
                    elif key == "s":
                        want_still = True
                    elif key == "r":
                        recording.toggle(session.renderer, source)
                    elif live_control.key(key):  # l: learn
                        show_overlay = True
                    else:
                        show.key(key)   # 1-9 scenes, n/p next/previous
                if window.should_close:
                    break
            snap = controls.snapshot()
            live_control.commands(snap.commands, session)  # MIDI clock -> tempo
            steering.step(session.analysis.extractor.beat, controls.take_tempo())  # /lj/tempo/*, Link
            want_still = want_still or "still" in snap.triggers
            if snap.mapping:
                session.request_reload(find_mapping(snap.mapping))
            for command in snap.commands:   # (name, argument...) queued by OSC, MIDI, keys
                name, arg = command[0], (command[1] if len(command) > 1 else None)
                if name == RECORD_START:
                    recording.start(arg, session.renderer, source)
                elif name == RECORD_STOP:
                    recording.stop()
                elif name in SHOW_COMMANDS:   # scenes, presets, cues, latents
                    show.command(name, arg)
            show.poll()
            if opts.watch and frame_no % 20 == 0:
                if watched != session.mapping_path:
                    watched, watched_mtime = session.mapping_path, _mtime(session.mapping_path)
                mtime = _mtime(watched)
                if mtime != watched_mtime:
                    watched_mtime = mtime
                    session.request_reload(watched)
                session.renderer.reload_changed(wait=False)  # read + checked on a thread; a broken one keeps the old
            if session.apply_reload():
                declare_params(controls, session.mapping)
                live_control.on_mapping(session)
            if getattr(snap, "generator", None):  # /lj/generator: loaded on a thread, swapped between frames
                session.request_generator(snap.generator)
            if session.apply_generator():
                declare_params(controls, session.mapping)
                live_control.on_mapping(session)
                prev = None  # the last frame came from the old generator (maybe another size)
            faults.note(session)

            if "hold" in snap.triggers and prev is not None:
                session.renderer.hold()
            params = session.params_at(source.ring, source.position, snap.params)
            live_control.frame(params, snap, session)  # OSC/MIDI overrides, at the mapping stage
            runner = session.runner
            if runner.idle:  # a slow frame still in the works is not waited for here
                runner.submit(params)
            if prev is not None:
                session.draw(*prev)
                if want_still:
                    save_still(session.renderer, opts.stills_dir, still_gate)
                    want_still = False
                recording.frame(session.renderer, prev[1].t, source)
                if outputs is not None:
                    outputs.frame(session.renderer)
                if window is not None:
                    fb_w, fb_h = window.framebuffer_size
                    session.renderer.present(ctx.screen, (fb_w, fb_h))
                    if show_overlay and overlay is not None:
                        if frame_no % 15 == 0:
                            overlay.set_lines(overlay_lines(stats, session, session.runner.last_gen_s * 1e3)
                                              + live_control.overlay_lines())
                        overlay.draw((fb_w, fb_h))
                    window.swap()
            if sender is not None:
                sender.send_features(session.analysis.features, params.t)
            if published is None or t0 - published >= 1.0:
                # state for /lj/get, OSCQuery, OSC out and GET /health, once a second
                published = t0
                shown = {"generator": session.generator_spec,
                         "scene": getattr(session.mapping, "scene", ""),
                         **recording.state(), **still_gate.state(),
                         **show.preset_gate.state(), **show.latent_gate.state(), **(health or {})}
                publish_state(controls, sender, opts.health_monitor, shown, session, runner, source,
                              stats, faults, started, frame_no, sleeping)
            # Wait for the generator at most a few of its usual frame times: a generator that
            # suddenly takes ten times longer holds the last good picture while the shaders, the
            # overlay and OSC keep running on the current audio.
            gen_ema = 0.9 * gen_ema + 0.1 * runner.last_gen_s
            prev = (runner.result(timeout=max(LATE_MIN_S, LATE_FACTOR * gen_ema)), params)
            frame_no += 1
            stats.add(time.perf_counter() - t0, runner.last_gen_s)
            if getattr(source, "finished", False):
                break
            if opts.max_frames is not None and frame_no >= opts.max_frames:
                break
            if opts.max_seconds is not None and time.perf_counter() - started >= opts.max_seconds:
                break
    finally:
        recording.stop()  # finalise the file first (SIGINT/SIGTERM end the loop through here)
        if outputs is not None:
            outputs.close()
        if steering is not None:
            steering.close()
        if source_started:
            source.stop()
        live_control.close()
        if query is not None:
            query.stop()
        if server is not None:
            server.stop()
        if sender is not None:
            sender.close()
        if session is not None:
            session.close()
        if window is not None:
            window.close()
        elif ctx is not None:
            ctx.release()
    stats.session = session
    stats.last_params = prev[1] if prev is not None else None
    stats.controls = controls
    stats.recording = recording
    return stats


class FaultLog:
    """Counts the mapping reloads refused and remembers the last error of any kind."""

    def __init__(self):
        self.mapping_errors = 0
        self.last_error = ""
        self._mapping_seen = None
        self._generator_seen = 0

    def note(self, session) -> None:
        err = session.last_error
        if err is not None and err is not self._mapping_seen:  # a new refusal (a new str each time)
            self.mapping_errors += 1
            self.last_error = f"mapping: {err}"
        self._mapping_seen = err
        runner = session.runner
        if runner.error_count != self._generator_seen:
            self._generator_seen = runner.error_count
            self.last_error = f"generator: {getattr(runner, 'last_error', '') or 'failed'}"


def publish_state(controls, sender, monitor, extra, session, runner, source, stats, faults,
                  started, frame_no, sleeping) -> dict:
    """The show's state under ``/lj/state/*`` (and OSC out, and the health monitor)."""
    bad_packets = controls.stats["bad_packets"]
    state = {"mapping": session.mapping.name or session.mapping_path.name,
             "fps": 0.0 if sleeping else round(stats.fps(), 1), "error": session.last_error or "",
             "uptime": round(time.perf_counter() - started, 1),
             "frames": frame_no, "sleeping": int(sleeping),
             "generator_errors": runner.error_count,
             "late_frames": runner.late_frames,
             "mapping_errors": faults.mapping_errors,
             "osc_bad_packets": bad_packets,
             "audio_lost": int(bool(getattr(source, "lost", False))),
             "audio_reopens": int(getattr(source, "reopens", 0))}
    if extra is not None:
        state.update(extra)
    controls.set_state(state)
    if sender is not None:
        sender.send_state(state)
    if monitor is not None:
        monitor.publish({**state, "last_error": faults.last_error,
                         "holding": int(runner.error_count > 0 and runner.last_failed),
                         "errors": {"generator": runner.error_count,
                                    "late_frames": runner.late_frames,
                                    "mapping": faults.mapping_errors,
                                    "osc_bad_packets": bad_packets,
                                    "audio_reopens": state["audio_reopens"]}})
    return state


def schedule_step(on: bool, sleeping: bool, schedule, clock, source, window, stop) -> bool:
    """One step of the loop outside the schedule's hours; returns whether it is asleep now.

    Falling asleep stops the audio source (a soundtrack falls silent, a sound card is let go) and
    blanks the window; asleep, the loop only blanks the window, answers its keys and naps until
    the next change (at most 1 s, so OSC state and ``stop`` stay responsive). Waking up starts the
    source again; the caller then renders as usual.
    """
    if on:
        log.info("schedule: on (%s)", schedule.text)
        source.start()
        return False
    if not sleeping:
        nxt = schedule.next_change(clock())
        log.info("schedule: off until %s; screen blank, generation asleep",
                 nxt.strftime("%a %H:%M") if nxt else "never")
        source.stop()
    if window is not None:
        for key in window.poll():
            if key in ("escape", "q"):
                stop()
        if window.should_close:
            stop()
        window.ctx.screen.use()
        window.ctx.clear(0.0, 0.0, 0.0)
        window.swap()
    left = schedule.seconds_to_change(clock())
    stop.event.wait(1.0 if left is None else min(1.0, max(0.01, left)))
    return True


RESTART_DELAY_S = 2.0


def supervise(make_source, opts: LiveOptions, stop: StopFlag, delay: float = RESTART_DELAY_S):
    """Run the live loop for an unattended installation: restart it after a crash.

    ``make_source()`` builds a fresh audio source for each run. A problem the user must fix
    (an :class:`~engine.errors.LJError` such as a busy port or a broken mapping) on the *first*
    start ends the run with that error; any failure after the show has been up is logged with its
    traceback and the loop restarts after ``delay`` seconds, with the restart count published in
    its state. Returns the last run's :class:`FrameStats` when ``stop`` is set or a run ends by
    itself (the source ended, a frame or time limit was reached).
    """
    from engine.errors import LJError

    restarts = 0
    while True:
        try:
            return run_live(make_source(), opts, stop, health={"restarts": restarts})
        except LJError:
            if restarts == 0:
                raise
            log.exception("the show could not restart; trying again in %.0f s", delay)
        except Exception:
            log.exception("the show stopped unexpectedly; restarting in %.0f s", delay)
        restarts += 1
        if opts.health_monitor is not None:  # /health: "restarting", or "crashloop" if frequent
            opts.health_monitor.note_restart()
        if stop.event.wait(delay):
            return None


def save_still(renderer, folder: str, gate: WriteGate | None = None) -> Path | None:
    """Save the frame as shown (effects included) as a new ``<folder>/lj-<date>-<time>.png``
    (``-2``, ``-3``... within one second). Never replaces a file; ``gate`` bounds how many and
    how fast (a refusal is counted and logged once per interval). None when not saved."""
    import io

    from PIL import Image

    from engine.errors import RenderError
    from engine.safeio import unique_path, write_new

    if gate is not None and not gate.admit():
        return None
    out = Path(folder)
    try:
        buf = io.BytesIO()
        Image.fromarray(renderer.read(), "RGB").save(buf, format="PNG")
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for _ in range(8):   # a name taken between the look and the write: the next one
            path = unique_path(out, f"lj-{stamp}", ".png")
            try:
                write_new(path, buf.getvalue())
                break
            except FileExistsError:
                continue
        else:
            raise OSError(f"no free file name in {out}")
    except (RenderError, OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if gate is not None:
            gate.refuse(f"{out}: {reason}")
        else:
            log.error("still not saved: %s: %s", out, reason)
        return None
    if gate is not None:
        gate.wrote()
    log.info("still saved: %s", path)
    return path


def declare_params(controls: Controls, mapping) -> None:
    """Tell the control stage the mapping's parameters (for patterns, queries and OSCQuery)."""
    for name, default in mapping.params.items():
        lo, hi = mapping.param_ranges[name]
        controls.declare_param(name, default, lo, hi)


def install_signal_handlers(stop: StopFlag) -> None:
    """SIGTERM and SIGINT end the loop cleanly (finalising whatever is open)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, stop)
        except (ValueError, OSError):  # not the main thread
            pass
