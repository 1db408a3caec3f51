"""Shared fixtures that start the real system parts the tests need.

Xvfb (a real X server) and PulseAudio (a real audio server with a null sink) are started here when
their programs are installed; where they are not, the tests that need them are skipped with the
reason. `.ci/run` installs both and sets ``LJ_REQUIRE_SYSTEM=1``, which turns those skips into
failures so CI always exercises the real parts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

REQUIRE_SYSTEM = os.environ.get("LJ_REQUIRE_SYSTEM") == "1"


def _missing(what: str) -> None:
    if REQUIRE_SYSTEM:
        pytest.fail(f"{what} (LJ_REQUIRE_SYSTEM=1)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def xvfb_display():
    """A running Xvfb server; yields the DISPLAY string (e.g. ':97') and sets it in os.environ."""
    if shutil.which("Xvfb") is None:
        _missing("Xvfb is not installed (apt-get install xvfb)")
    for num in range(97, 120):
        if not os.path.exists(f"/tmp/.X11-unix/X{num}") and not os.path.exists(f"/tmp/.X{num}-lock"):
            break
    display = f":{num}"
    proc = subprocess.Popen(
        ["Xvfb", display, "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/tmp/.X11-unix/X{num}"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            _missing("Xvfb did not start")
        time.sleep(0.05)
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    yield display
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(5)


def _pactl(*args: str, check: bool = True) -> str:
    out = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)
    if check and out.returncode != 0:
        raise RuntimeError(f"pactl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


@pytest.fixture(scope="session")
def pulse_server():
    """A running PulseAudio daemon (started here if none is running)."""
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        _missing("PulseAudio is not installed (apt-get install pulseaudio)")
    if subprocess.run(["pactl", "info"], capture_output=True, timeout=10).returncode != 0:
        subprocess.run(
            ["pulseaudio", "--start", "--exit-idle-time=-1", "--daemonize=yes"],
            capture_output=True, timeout=30,
        )
        deadline = time.monotonic() + 15
        while subprocess.run(["pactl", "info"], capture_output=True, timeout=10).returncode != 0:
            if time.monotonic() > deadline:
                _missing("PulseAudio did not start")
            time.sleep(0.2)
    yield


@pytest.fixture
def pulse_sink(pulse_server):
    """A fresh null sink, made the default sink and its monitor the default source.

    Yields a dict with ``name`` (the sink), ``monitor`` (its monitor source) and ``module`` (the
    module index, so a test can unload it to simulate a device that disappears).
    """
    name = "lj_test_" + uuid.uuid4().hex[:8]
    module = _pactl("load-module", "module-null-sink", f"sink_name={name}",
                    "rate=48000", "channels=2")
    _pactl("set-default-sink", name)
    _pactl("set-default-source", f"{name}.monitor")
    info = {"name": name, "monitor": f"{name}.monitor", "module": module}
    yield info
    _pactl("unload-module", module, check=False)
