"""Offline rendering: a song to a video file, as fast as the machine can.

Frame ``i`` is computed at audio position ``i * sr // fps`` through the same
:meth:`~engine.session.Session.params_at` the live loop uses, so a render shows what the live engine
would have shown at those moments, and two renders of one song are bit-identical on one machine.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from engine.session import ArrayReader, Session, to_mono


def render_song(samples: np.ndarray, sr: int, out_path: str | Path, *, mapping_path=None,
                generator: str | None = None, size: int = 512, fps: int = 30,
                render_scale: float = 1.0, progress=None, max_seconds: float | None = None) -> dict:
    """Render a song to a video file with the audio muxed in, as fast as the machine can.

    ``samples`` is float32 ``[n, channels]``. ``progress(done, total)`` is called after each
    frame. Returns a summary: frames, seconds of audio, wall seconds.

    The video is written to a hidden temporary file beside ``out_path`` and moved into place
    only when the render finished; a finished render replaces an earlier file (the operator
    named it). A render that fails leaves no file of its own and an earlier ``out_path``
    untouched. One interrupted (Ctrl-C, SIGTERM: the writer still finalises what was encoded)
    keeps its playable part: at ``out_path`` when that is free, else beside it as
    ``<name>.partial.mp4``, so an earlier full render is never replaced by a part.
    """
    out_path = _check_output(Path(out_path))
    tmp = out_path.with_name(f".{out_path.stem}.lj-render-{os.getpid()}{out_path.suffix}")
    try:
        summary = _render(samples, sr, tmp, mapping_path=mapping_path, generator=generator,
                          size=size, fps=fps, render_scale=render_scale, progress=progress,
                          max_seconds=max_seconds)
        os.replace(tmp, out_path)
    except KeyboardInterrupt:
        _keep_partial(tmp, out_path)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    summary["path"] = str(out_path)
    return summary


def _keep_partial(tmp: Path, out_path: Path) -> None:
    """An interrupted render's finalised part: to ``out_path`` if free, else a new name beside."""
    import logging

    from engine.safeio import unique_path

    if not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        return
    try:
        try:
            os.link(tmp, out_path)            # only if no file has that name
            tmp.unlink()
            return
        except FileExistsError:
            pass
        except OSError:                       # no hard links here (FAT, exFAT): look, then move
            if not (out_path.exists() or out_path.is_symlink()):
                os.replace(tmp, out_path)
                return
        dest = unique_path(out_path.parent, f"{out_path.stem}.partial", out_path.suffix)
        os.replace(tmp, dest)
        logging.getLogger("lj.render").warning(
            "render interrupted: %s kept as it was; the part rendered is %s", out_path, dest)
    except OSError:
        tmp.unlink(missing_ok=True)


def _check_output(path: Path) -> Path:
    """RenderError (one line, naming ``path``) before any work when it cannot be the output."""
    from engine.errors import RenderError
    from engine.render.record import _FORMATS

    if path.suffix.lower() not in _FORMATS:
        raise RenderError(f"cannot write video {path}: unknown extension "
                          f"{path.suffix or '(none)'} (use .mp4, .mkv or .mov)")
    if not path.parent.is_dir():
        raise RenderError(f"cannot write video {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise RenderError(f"cannot write video {path}: it is a directory")
    return path


def _render(samples, sr, out_path, *, mapping_path, generator, size, fps, render_scale,
            progress, max_seconds) -> dict:
    from engine.render.context import headless_context
    from engine.render.record import VideoWriter

    duration = len(samples) / sr
    if max_seconds is not None:
        duration = min(duration, max_seconds)
        samples = samples[: int(round(duration * sr))]
    n_frames = max(1, int(np.ceil(duration * fps - 1e-9)))
    gen_px = max(16, int(round(size * render_scale)))
    session = Session(sr, mapping_path, generator, (gen_px, gen_px))
    reader = ArrayReader(to_mono(samples))
    ctx = headless_context()
    started = time.perf_counter()
    try:
        session.attach_renderer(ctx, (size, size))
        writer = VideoWriter(out_path, (size, size), fps, audio=(samples, sr))
        try:
            _frames(session, reader, writer, sr, fps, n_frames, progress)
        finally:
            writer.close()
    finally:
        session.close()
        ctx.release()
    return {"frames": n_frames, "seconds": duration, "wall": time.perf_counter() - started,
            "path": str(out_path)}


def _frames(session, reader, writer, sr: int, fps: int, n_frames: int, progress) -> None:
    """Frame ``i`` generated while frame ``i - 1`` is drawn and written."""
    prev = None
    for i in range(n_frames + 1):
        params = session.params_at(reader, i * sr // fps) if i < n_frames else None
        if params is not None:
            session.runner.submit(params)
        if prev is not None:
            session.draw(prev[0], prev[1])
            writer.write(session.renderer.read())
            if progress:
                progress(i, n_frames)
        if params is not None:
            prev = (session.runner.result(), params)
