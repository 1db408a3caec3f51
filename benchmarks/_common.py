"""Helpers shared by the benchmark scripts (not part of the engine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

import numpy as np


def percentile_ms(values_s, q: float) -> float:
    return float(np.percentile(np.asarray(values_s) * 1e3, q)) if len(values_s) else float("nan")


@contextlib.contextmanager
def display():
    """Yield a DISPLAY: the current one, or a private Xvfb (None if neither can be had)."""
    if os.environ.get("DISPLAY"):
        yield os.environ["DISPLAY"]
        return
    if shutil.which("Xvfb") is None:
        yield None
        return
    num = next(n for n in range(140, 200) if not os.path.exists(f"/tmp/.X11-unix/X{n}"))
    proc = subprocess.Popen(["Xvfb", f":{num}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/tmp/.X11-unix/X{num}") and time.monotonic() < deadline:
        time.sleep(0.05)
    os.environ["DISPLAY"] = f":{num}"
    try:
        yield os.environ["DISPLAY"]
    finally:
        os.environ.pop("DISPLAY", None)
        proc.terminate()
        proc.wait(5)
