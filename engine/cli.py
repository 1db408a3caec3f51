"""The ``lj`` command.

::

    lj demo                      the built-in demo: a window with sound, or a video file when headless
    lj run [--audio FILE | --input DEVICE] [--mapping FILE] ...   the live loop
    lj render SONG -o OUT.mp4    offline, as fast as the machine can, audio muxed in
    lj devices                   list sound devices, MIDI inputs and monitors
    lj check MAPPING             validate a mapping file
    lj analyze SONG [-o DIR]     tempo, beats, onsets and feature curves as the live engine saw them
    lj export MODEL -o OUT       a model as TorchScript (.ts) or safetensors + JSON (.safetensors)
    lj explore MODEL             contact sheets, principal directions, latent banks (docs/studio.md)
    lj train IMAGES -o RUN       train a StyleGAN2 on a folder of images (also finetune, uncanny)

Every problem a user can fix ends as one line on stderr (``lj: error: ...``) and exit status 2,
a bad option too (``lj: error: --fps must be ... (see lj render -h)``; the converters are in
:mod:`engine.argtypes`); anything unexpected is one line as well, and ``--debug`` (or
``LJ_DEBUG=1``) shows its traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import signal
import sys
import time
from pathlib import Path

from engine import __version__
from engine.argtypes import folder as _folder_option
from engine.argtypes import new_file as _new_file
from engine.argtypes import number, whole
from engine.errors import LJError

log = logging.getLogger("lj")

EXIT_ERROR = 2


#: --size: pixels of a side (a square frame); --fps: frames per second of a video.
_size = whole(16, 4096)
_fps = whole(1, 240)


def _wxh(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT like 1920x1080, not '{text}'")
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"{text}: each side must be 16..8192 pixels")
    return (w, h)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, e.g. 127.0.0.1:9001, not '{text}'")
    return host, int(port)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"expected a UDP port number, not '{text}'")
    return int(text)


def _positive(text: str) -> float:
    """A positive, finite number (``inf`` and ``nan`` are refused)."""
    return number(0.0, math.inf, above=True)(text)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``lj: error: MESSAGE (see lj CMD -h)`` and exit status 2
    instead of a usage block. ``add_subparsers`` makes every subcommand's parser of this class
    too (its ``parser_class`` defaults to ``type(self)``), so ``lj CMD`` errors alike."""

    def error(self, message: str):
        message = " ".join(_reword(message).split())  # one line, whatever the argument held
        if len(message) > 300:
            message = message[:300] + "..."
        self.exit(EXIT_ERROR, f"lj: error: {message} (see {self.prog} -h)\n")

    def parse_args(self, args=None, namespace=None):
        # An unknown option after a subcommand is reported by the top parser: name the
        # subcommand's help instead, where the known options are.
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(ns, "command", None)
            owner = _subparser(self, command) if command else self
            owner.error(f"unrecognized arguments: {' '.join(extra)}")
        return ns


def _reword(message: str) -> str:
    """``argument --fps/-f: must be ...`` -> ``--fps must be ...``; other argparse messages
    keep theirs after ``--fps:``."""
    m = re.match(r"argument (\S+): (.*)\Z", message, re.S)
    if not m:
        return message
    name, rest = m[1].split("/")[0], m[2]
    return f"{name} {rest}" if rest.startswith("must ") else f"{name}: {rest}"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mapping", "-m", help="mapping file (default: mappings/default.toml)")
    p.add_argument("--generator", "-g", help="generator (default: the mapping's, else builtin:cppn)")
    p.add_argument("--size", type=_size, default=512, help="generator and output size in pixels (default 512)")
    p.add_argument("--class", dest="class_index", type=whole(0, 1_000_000), metavar="N",
                   help="class label of a conditional model (same as --generator MODEL#class=N)")


def _add_live(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fullscreen", action="store_true", help="start borderless fullscreen")
    p.add_argument("--monitor", type=whole(0, 63), help="monitor number for fullscreen (0 = primary)")
    p.add_argument("--no-vsync", action="store_true", help="do not wait for the display's refresh")
    p.add_argument("--headless", action="store_true", help="no window: render offscreen (EGL)")
    p.add_argument("--output-size", type=_wxh, metavar="WxH",
                   help="shader chain and output size, e.g. 1920x1080 (default: --size); the "
                        "generator's frame is upscaled to it (bicubic)")
    p.add_argument("--fit", choices=("letterbox", "crop", "stretch"), default="letterbox",
                   help="how a picture fills a frame of another shape (default letterbox)")
    p.add_argument("--osc-port", type=_port, default=9000, help="OSC in port (default 9000, 0 = any free)")
    p.add_argument("--osc-listen", default="127.0.0.1", metavar="HOST",
                   help="address OSC listens on (default 127.0.0.1; 0.0.0.0 for the LAN)")
    p.add_argument("--osc-allow", metavar="IP[,IP...]",
                   help="accept OSC only from these sender addresses or networks "
                        "(e.g. 192.168.1.20,10.0.0.0/24; this machine is always accepted)")
    p.add_argument("--osc-lan-admin", action="store_true",
                   help="let OSC senders on the LAN also load mappings and models by path and "
                        "record (default: only this machine may; docs/osc.md)")
    p.add_argument("--show-dir", action="append", metavar="DIR",
                   help="a folder /lj/mapping/load and /lj/generator may load files from, besides "
                        "the starting mapping's folder and the shipped mappings (repeatable)")
    p.add_argument("--no-osc", action="store_true", help="do not listen for OSC")
    p.add_argument("--osc-out", type=_host_port, metavar="HOST:PORT", action="append",
                   help="send the features as OSC to HOST:PORT at frame rate (repeatable)")
    p.add_argument("--osc-smoothing", type=number(0, 60), default=0.06, metavar="SECONDS",
                   help="smooth incoming parameter values over this time (default 0.06, 0 = off, "
                        "at most 60)")
    p.add_argument("--oscquery-port", type=_port, metavar="PORT",
                   help="serve OSCQuery (HTTP) on this TCP port (default: the OSC port's number)")
    p.add_argument("--no-oscquery", action="store_true", help="no OSCQuery discovery server")
    p.add_argument("--no-zeroconf", action="store_true",
                   help="do not advertise OSC/OSCQuery on the network (Zeroconf/mDNS)")
    p.add_argument("--midi", metavar="NAME|INDEX", action="append",
                   help="MIDI input to play the show with (see lj devices; repeatable)")
    p.add_argument("--link", action="store_true",
                   help="follow an Ableton Link session's tempo and beat (needs the 'link' extra: aalink)")
    p.add_argument("--frames", type=whole(1, 10**9), help="stop after this many frames")
    p.add_argument("--seconds", type=_positive, help="stop after this many seconds")
    p.add_argument("--overlay", action="store_true", help="start with the h overlay shown")
    p.add_argument("--record", metavar="FILE", type=_new_file,
                   help="record the output as shown, with the audio, to FILE (.mp4/.mkv/.mov); "
                        "key r and /lj/record/start|stop also record (an existing FILE is kept: "
                        "FILE-2.mp4...)")
    p.add_argument("--record-dir", default="recordings", metavar="DIR", type=_folder_option,
                   help="where key r and /lj/record/start [NAME] record; NAME is a file name "
                        "in DIR, never replacing a file (default ./recordings)")
    p.add_argument("--record-fps", type=number(1, 240), default=30.0, metavar="FPS",
                   help="frame rate of recordings (default 30; 1 to 240)")
    p.add_argument("--fixed-size", action="store_true",
                   help="always generate at --size (default: render smaller and upscale when the "
                        "generator cannot hold --target-fps)")
    p.add_argument("--target-fps", type=number(1, 1000), default=60.0, metavar="FPS",
                   help="frame rate the resolution budget aims for (default 60; 1 to 1000)")
    p.add_argument("--stills", default="stills", metavar="DIR", type=_folder_option,
                   help="where the s key and /lj/trigger/still save PNGs (default ./stills)")
    p.add_argument("--cues", metavar="FILE",
                   help="play a cue list (timed scene/preset changes; docs/mapping.md)")
    p.add_argument("--presets", metavar="DIR", type=_folder_option,
                   help="where /lj/preset/save|load keep presets (default ./presets)")
    p.add_argument("--presets-overwrite", action="store_true",
                   help="let /lj/preset/save and /lj/latent/save replace a preset or latent of "
                        "the same name (default: such a save is refused)")
    p.add_argument("--installation", action="store_true",
                   help="unattended: fullscreen, no cursor, audio files loop, restart after a crash")
    p.add_argument("--log", metavar="FILE",
                   help="also log to FILE (rotated at 5 MB, 5 files kept)")
    p.add_argument("--schedule", action="append", metavar="HOURS",
                   help="on/off hours, e.g. '10:00-18:00' or 'mon-fri 10:00-18:00; sat 12:00-16:00' "
                        "(repeatable); outside them the screen is black and generation sleeps")
    p.add_argument("--health-port", type=_port, metavar="PORT",
                   help="serve GET /health (JSON: fps, uptime, frames, errors) on this TCP port, "
                        "on the --osc-listen address (0 = any free)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="lj", description="Latent Jockey: real-time, audio-reactive visuals.")
    parser.add_argument("--version", action="version", version=f"lj {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="play the built-in demo (a video file when there is no display)")
    p.add_argument("--output", "-o", default="lj-demo.mp4", type=_new_file,
                   help="where the headless demo video goes (default lj-demo.mp4)")
    p.add_argument("--duration", type=number(0, 600, above=True), default=30.0,
                   help="seconds of demo music (default 30, at most 600)")
    p.add_argument("--fps", type=_fps, default=30, help="frames per second of the headless video")
    p.add_argument("--render", action="store_true", help="render to a file even with a display")
    _add_common(p)
    _add_live(p)

    p = sub.add_parser("run", help="the live loop")
    p.add_argument("--config", "-c", metavar="FILE",
                   help="read options from a TOML file (see docs/installation.md); the command "
                        "line wins")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", "-i", metavar="DEVICE", help="sound card input: index or name (see lj devices)")
    src.add_argument("--audio", "-a", metavar="FILE", help="play FILE out loud and follow it")
    p.add_argument("--channels", help="input channels to mix, e.g. 3,4 (default: all)")
    p.add_argument("--loop", action="store_true", help="loop the --audio file")
    p.add_argument("--output", dest="outputs", action="append", metavar="KIND:TARGET",
                   help="also send the frames to another app: ndi:NAME (pip install "
                        "'latent-jockey[ndi]'), v4l2:/dev/videoN (v4l2loopback virtual camera); "
                        "repeatable")
    _add_common(p)
    _add_live(p)

    p = sub.add_parser("render", help="render a song to a video file, offline")
    p.add_argument("song", help="audio file (wav, flac, ogg, mp3)")
    p.add_argument("--output", "-o", required=True, type=_new_file,
                   help="video file to write (.mp4, .mkv, .mov)")
    p.add_argument("--fps", type=_fps, default=30, help="frames per second (default 30, 1 to 240)")
    p.add_argument("--render-scale", type=number(0.1, 4), default=1.0,
                   help="generate at this fraction of --size and upscale on the GPU (default 1; "
                        "0.1 to 4)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    _add_common(p)

    sub.add_parser("devices", help="list sound devices, MIDI inputs and monitors")

    p = sub.add_parser("check", help="validate a mapping file")
    p.add_argument("mapping", help="mapping file")

    p = sub.add_parser("analyze", help="tempo, beats, onsets and feature curves of a song (causal)")
    p.add_argument("song", help="audio file (wav, flac, ogg, mp3)")
    p.add_argument("--output", "-o", default=".", type=_folder_option,
                   help="directory for <song>.features.csv, <song>.json, <song>.png (default .)")
    p.add_argument("--json", action="store_true",
                   help="print the summary (tempo, beat and onset times) as JSON on stdout")

    p = sub.add_parser("export", help="write a model as TorchScript (.ts) or safetensors + JSON")
    p.add_argument("model", help="a generator spec: model.pkl, model.safetensors, builtin:cppn, ...")
    p.add_argument("--output", "-o", required=True, type=_new_file,
                   help="out.ts (TorchScript) or out.safetensors")
    p.add_argument("--size", type=_size, default=512, help="size of a built-in generator (default 512)")
    p.add_argument("--class", dest="class_index", type=whole(0, 1_000_000), metavar="N",
                   help="class label of a conditional model")

    from engine.studio.commands import add_parsers as add_studio_parsers

    add_studio_parsers(sub)
    return parser


def _generator_spec(args) -> str | None:
    """``--generator`` with ``--class N`` folded in as ``#class=N``."""
    spec = getattr(args, "generator", None)
    n = getattr(args, "class_index", None)
    if n is None:
        return spec
    if not spec:
        raise LJError("--class needs --generator (a conditional model)")
    return f"{spec}{'&' if '#' in spec else '#'}class={n}"


# ---------------------------------------------------------------------------------------------

class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, unless forced)."""

    def __init__(self, total_label: str, enabled: bool):
        self.label = total_label
        self.enabled = enabled
        self.started = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self._last < 0.2:
            return
        self._last = now
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else 0.0
        width = 30
        fill = int(width * done / max(1, total))
        sys.stderr.write(f"\r{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{total} frames "
                         f"{rate:5.1f} fps  eta {eta:4.0f} s ")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _osc_allow(text: str | None) -> list[str] | None:
    """``--osc-allow`` as a list of entries, each checked (a bad one is a one-line LJError)."""
    if text is None:
        return None
    from engine.control.access import AllowList

    entries = [a.strip() for a in text.split(",") if a.strip()]
    AllowList(entries)  # refuses anything that is not an IP address or network
    return entries


def _show_dirs(dirs: list[str] | None) -> list[str]:
    """``--show-dir`` folders, each checked to be one (LJError otherwise)."""
    for d in dirs or []:
        if not Path(d).expanduser().is_dir():
            raise LJError(f"--show-dir {d[:200]!r} is not a folder")
    return list(dirs or [])


def _live_options(args) -> "LiveOptions":
    from engine.live import LiveOptions

    return LiveOptions(
        mapping=args.mapping, generator=_generator_spec(args), size=args.size,
        fullscreen=args.fullscreen, monitor=args.monitor, vsync=not args.no_vsync,
        headless=args.headless, osc_host=args.osc_listen,
        osc_port=None if args.no_osc else args.osc_port, osc_out=args.osc_out,
        osc_allow=_osc_allow(args.osc_allow), osc_lan_admin=args.osc_lan_admin,
        show_dirs=_show_dirs(args.show_dir),
        osc_smoothing=max(0.0, args.osc_smoothing),
        oscquery_port=None if args.no_oscquery else (
            args.oscquery_port if args.oscquery_port is not None else args.osc_port),
        max_frames=args.frames, max_seconds=args.seconds, overlay=args.overlay,
        stills_dir=args.stills, cues=getattr(args, "cues", None),
        presets_dir=getattr(args, "presets", None),
        presets_overwrite=getattr(args, "presets_overwrite", False),
        output_size=args.output_size, fit=args.fit, record=args.record,
        record_dir=args.record_dir, record_fps=args.record_fps, outputs=getattr(args, "outputs", None),
        resolution_budget=not args.fixed_size, target_fps=args.target_fps,
        midi=args.midi, zeroconf=not args.no_zeroconf, link=getattr(args, "link", False),
        schedule=_schedule(args.schedule))


def _schedule(hours):
    if not hours:
        return None
    from engine.schedule import Schedule

    return Schedule(hours)


def _run_live(make_source, args) -> int:
    """Run the live loop on sources from ``make_source()`` (a new one per restart)."""
    from engine.live import StopFlag, install_signal_handlers, run_live, supervise

    stop = StopFlag()
    install_signal_handlers(stop)
    opts = _live_options(args)
    server = None
    if args.health_port is not None:
        from engine.control.access import AllowList
        from engine.health import Health, HealthServer

        opts.health_monitor = Health(target_fps=opts.target_fps)
        server = HealthServer(opts.health_monitor, host=args.osc_listen, port=args.health_port,
                              allow=AllowList(opts.osc_allow))
        server.start()  # a busy port is a one-line error before anything else opens
    try:
        if args.installation:
            opts.fullscreen = opts.hide_cursor = True
            stats = supervise(make_source, opts, stop)
        else:
            stats = run_live(make_source(), opts, stop)
    finally:
        if server is not None:
            server.stop()
    if stats is not None and stats.frames:
        print(f"lj: {stats.frames} frames, {stats.mean_fps():.1f} fps average")
    return 0


def cmd_demo(args) -> int:
    from engine.audio.demo import demo_song

    samples, sr, _bpm = demo_song(seconds=args.duration)
    from engine.render.context import has_display

    if args.headless or args.render or not has_display():
        from engine.offline import render_song

        out = Path(args.output)
        print(f"lj: no display, rendering the demo to {out} ({args.duration:g} s of music)"
              if not (args.render or args.headless) else f"lj: rendering the demo to {out}")
        summary = render_song(samples, sr, out, mapping_path=args.mapping, generator=_generator_spec(args),
                              size=args.size, fps=args.fps,
                              progress=Progress("demo", sys.stderr.isatty()))
        print(f"lj: wrote {out.resolve()} ({summary['frames']} frames, "
              f"{summary['seconds']:.1f} s, rendered in {summary['wall']:.1f} s)")
        return 0
    from engine.audio.sources import FilePlayer

    return _run_live(lambda: FilePlayer(samples, sr, loop=args.installation), args)


def cmd_run(args) -> int:
    from engine.audio import sources

    _osc_allow(args.osc_allow)  # bad entries are refused before any audio opens
    _show_dirs(args.show_dir)
    if args.audio:
        samples, sr = sources.load_audio(args.audio)
        loop = args.loop or args.installation
        return _run_live(lambda: sources.FilePlayer(samples, sr, loop=loop), args)
    else:
        channels = None
        if args.channels:
            try:
                channels = [int(c) for c in args.channels.split(",")]
            except ValueError:
                raise LJError(f"--channels expects numbers like 3,4, not '{args.channels}'")
        device = args.input
        if device is not None and device.isdigit():
            device = int(device)
        sources.LiveInput(device=device, channels=channels)  # a bad device fails here, once
        return _run_live(lambda: sources.LiveInput(device=device, channels=channels), args)


def cmd_render(args) -> int:
    from engine.audio.sources import load_audio
    from engine.offline import render_song

    if args.size * args.render_scale > 4096:
        raise LJError(f"--size {args.size} x --render-scale {args.render_scale:g} would generate "
                      f"{args.size * args.render_scale:.0f} pixel frames; at most 4096")
    samples, sr = load_audio(args.song)
    out = Path(args.output)
    summary = render_song(samples, sr, out, mapping_path=args.mapping, generator=_generator_spec(args),
                          size=args.size, fps=args.fps, render_scale=args.render_scale,
                          progress=Progress("render", not args.quiet and sys.stderr.isatty()))
    ratio = summary["wall"] / summary["seconds"] if summary["seconds"] else 0.0
    print(f"lj: wrote {out} ({summary['frames']} frames, {summary['seconds']:.1f} s of audio, "
          f"{summary['wall']:.1f} s to render, {ratio:.2f}x the song's length)")
    return 0


def cmd_devices(args) -> int:
    from engine.audio.sources import list_devices

    print(list_devices())
    from engine.control.midi import describe_inputs

    print(describe_inputs())
    from engine.errors import RenderError
    from engine.render.context import describe_monitors, list_monitors

    try:
        print("monitors (--monitor N):\n" + describe_monitors(list_monitors()))
    except RenderError as exc:
        print(f"monitors: none ({exc})")
    return 0


def cmd_check(args) -> int:
    from engine.generators import load_generator
    from engine.mapping import compile_mapping, load_mapping
    from engine.paths import SHADER_DIR
    from engine.session import HOP, chain_inputs, check_uniform_targets

    spec = load_mapping(Path(args.mapping))
    generator = load_generator(getattr(spec, "generator", None) or "builtin:cppn", (64, 64))
    mapping = compile_mapping(spec, generator.latent_space(), 44100, HOP)
    check_uniform_targets(mapping, chain_inputs(mapping.shader_chain, SHADER_DIR))
    print(f"{args.mapping}: ok ({mapping.name or 'unnamed'}; {len(mapping.uniform_targets)} shader "
          f"targets, chain: {', '.join(mapping.shader_chain) or 'none'})")
    return 0


def cmd_analyze(args) -> int:
    import json

    from engine.analyze import analyze_file

    info, paths = analyze_file(args.song, args.output)
    if args.json:
        print(json.dumps({k: info[k] for k in ("source", "duration", "tempo", "tempo_final",
                                               "tempo_confidence", "tempo_known_from", "beats",
                                               "downbeats", "onsets")}))
        return 0
    tempo = f"{info['tempo']:.1f} BPM" if info["tempo"] else "unknown"
    print(f"lj: {args.song}: tempo {tempo} (confidence {info['tempo_confidence']:.2f}), "
          f"{len(info['beats'])} beats, {len(info['onsets'])} onsets in {info['duration']:.1f} s")
    print(f"lj: wrote {paths['csv']}, {paths['json']}, {paths['png']}")
    return 0


def cmd_export(args) -> int:
    from engine.generators.export import export

    spec = args.model
    if args.class_index is not None:
        spec = f"{spec}{'&' if '#' in spec else '#'}class={args.class_index}"
    written = export(spec, args.output, (args.size, args.size))
    print(f"lj: wrote {', '.join(str(p) for p in written)}")
    return 0


COMMANDS = {"demo": cmd_demo, "run": cmd_run, "render": cmd_render, "devices": cmd_devices,
            "check": cmd_check, "analyze": cmd_analyze, "export": cmd_export}


def _studio_commands() -> dict:
    from engine.studio.commands import COMMANDS as studio

    return studio


COMMANDS.update(_studio_commands())


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def _interrupt(*_):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run ``lj`` with ``argv``; returns the exit status. Nothing escapes as a traceback unless
    asked for (``--debug`` or ``LJ_DEBUG=1``): a problem the user can fix is one line and status 2,
    Ctrl-C is ``lj: interrupted`` and 130, anything else one line naming it as unexpected."""
    # SIGTERM (systemd, kill) ends any command like Ctrl-C: open files are finalised on the way
    # out. The live loop replaces this with a flag it checks between frames.
    try:
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (tests calling main())
        pass
    args = None
    try:
        args = _parse(argv)
        if isinstance(args, int):
            return args
        return COMMANDS[args.command](args)
    except LJError as exc:
        print(f"lj: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("lj: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lj ... | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # OSError, MemoryError, RecursionError, a bug: still one line
        if getattr(args, "debug", False) or os.environ.get("LJ_DEBUG") not in (None, "", "0"):
            raise
        print(f"lj: error: {_unexpected(exc)}", file=sys.stderr)
        return EXIT_ERROR


def _parse(argv):
    """The parsed arguments, with ``--config``'s file applied and logging set up; or the exit
    status when there is nothing to run (``-h``, ``--version``, a bad option already reported)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "config", None):  # the file's values become defaults; parse again
            from engine.showconfig import apply_config

            apply_config(_subparser(parser, args.command), args.config)
            args = parser.parse_args(argv)
    except SystemExit as exc:  # help, version, or Parser.error's one line
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="lj: %(levelname)s: %(message)s")
    if getattr(args, "log", None):
        from logging.handlers import RotatingFileHandler

        try:
            handler = RotatingFileHandler(args.log, maxBytes=5_000_000, backupCount=5)
        except OSError as exc:
            raise LJError(f"cannot write the log file {args.log}: {exc.strerror or exc}") from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    return args


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (a multi-line one, e.g. a GLSL log, joined with ' | ')."""
    return " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _unexpected(exc: BaseException) -> str:
    """The one line for an exception no part of lj turned into an LJError."""
    if isinstance(exc, MemoryError):
        return "out of memory (the input is too large for this machine)"
    if isinstance(exc, RecursionError):
        return "input nested too deeply to process (RecursionError; run with --debug for details)"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    msg = _one_line(exc)[:300]
    return f"unexpected {type(exc).__name__}: {msg} (a bug; run with --debug for the traceback)"
