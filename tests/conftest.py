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
    # -displayfd: Xvfb picks a free display number itself and writes it to us once it is ready,
    # so parallel test runs never race for the same display.
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(write_fd,),
    )
    os.close(write_fd)
    number = b""
    deadline = time.monotonic() + 15
    os.set_blocking(read_fd, False)
    while not number.endswith(b"\n"):
        try:
            chunk = os.read(read_fd, 16)
        except BlockingIOError:
            chunk = None
        if chunk == b"" or proc.poll() is not None or time.monotonic() > deadline:
            os.close(read_fd)
            proc.kill()
            _missing("Xvfb did not start")
        if chunk:
            number += chunk
        else:
            time.sleep(0.02)
    os.close(read_fd)
    display = f":{int(number)}"
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    yield display
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(5)


def clear_stale_jack_shm() -> None:
    """Remove JACK's shared-memory files when no JACK server runs.

    jackd (the MIDI test's private server) leaves ``/dev/shm/jack*`` behind, and the next run's
    PortAudio then finds a registry of a server that is gone: its JACK host API changes how a
    PulseAudio stream that loses its source behaves (seen: the capture stalls instead of the
    loss being noticed), so the audio-recovery tests fail on a machine that ran the suite
    before. Called before the run only: a JACK client still alive in this process (mido's
    ports are collected later) would abort when its server's files vanish under it.
    """
    if subprocess.run(["pgrep", "-x", "jackd"], capture_output=True).returncode == 0:
        return  # a live server (someone's own): its files are not stale
    shm = "/dev/shm"
    try:
        names = os.listdir(shm)
    except OSError:
        return
    for name in names:
        if name.startswith(("jack-", "jack_")):
            path = os.path.join(shm, name)
            try:
                shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
            except OSError:
                pass


def _pactl(*args: str, check: bool = True) -> str:
    out = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10)
    if check and out.returncode != 0:
        raise RuntimeError(f"pactl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


@pytest.fixture(scope="session", autouse=True)
def _private_pulse(tmp_path_factory):
    """Start a private PulseAudio for this test run, before anything opens a sound device.

    It listens on its own socket and loads only what the tests need (no stream-restore, so
    nothing a stream did in one test follows it into the next), and never touches the user's
    own audio server. ``PULSE_SERVER`` points this process and its children at it; PortAudio's
    ALSA "pulse" device follows. Yields None when PulseAudio is not installed.
    """
    clear_stale_jack_shm()
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        yield None
        return
    runtime = tmp_path_factory.mktemp("pulse")
    sock = runtime / "native"
    script = runtime / "test.pa"
    script.write_text(
        f"load-module module-native-protocol-unix socket={sock} auth-anonymous=1\n"
        "load-module module-null-sink sink_name=lj_idle rate=48000\n"
        "load-module module-always-sink\n")
    env = dict(os.environ, PULSE_RUNTIME_PATH=str(runtime), PULSE_STATE_PATH=str(runtime))
    proc = subprocess.Popen(
        ["pulseaudio", "-n", "-F", str(script), "--daemonize=no", "--exit-idle-time=-1",
         "--use-pid-file=no", "--log-target=stderr", "--log-level=error"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {k: os.environ.get(k) for k in ("PULSE_SERVER", "PULSE_SINK", "PULSE_SOURCE")}
    os.environ["PULSE_SERVER"] = f"unix:{sock}"
    deadline = time.monotonic() + 15
    ok = False
    while proc.poll() is None and time.monotonic() < deadline:
        if subprocess.run(["pactl", "info"], capture_output=True, timeout=10).returncode == 0:
            ok = True
            break
        time.sleep(0.1)
    yield sock if ok else None
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def pulse_server(_private_pulse):
    """The tests' private PulseAudio (see ``_private_pulse``); skips when there is none."""
    if _private_pulse is None:
        if shutil.which("pulseaudio") is None:
            _missing("PulseAudio is not installed (apt-get install pulseaudio pulseaudio-utils)")
        _missing("PulseAudio did not start")
    yield _private_pulse


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
