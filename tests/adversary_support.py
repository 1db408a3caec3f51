"""The real engine under attack: a show folder, a running ``lj run --headless``, and the attacks.

Used by ``tests/test_adversary.py`` (one assertion per attack) and ``benchmarks/attack.py`` (a
table of every attack, survived or not, and the longest frame gap it caused). Nothing here is a
mock: the engine is a separate process started as a user would start it, attacks go over real
UDP/TCP on 127.0.0.1 or are real files written into its show folder.

How the show's health is read:

- **frames**: the engine sends its features as OSC (``--osc-out``) once per rendered frame, one
  datagram holding ``/lj/time``. A receiver thread stamps each on arrival, so a frame gap is
  measured to the millisecond without asking the engine anything (asking would itself be slowed
  by a hung process).
- **/health**: ``GET /health`` over HTTP with a socket timeout; its JSON ``frames`` counter is
  published by the loop about once a second.
- **memory**: ``VmRSS`` of the engine process from ``/proc``; a watchdog thread kills the engine
  when it passes :data:`RSS_KILL` so an attack that eats memory cannot take the test machine down.
- **outside files**: a sentinel folder next to the show folder (a precious file the attacks aim
  at, a secrets file) is snapshotted (size, mtime, content hash) before and after.

Every wait is bounded; when an attack leaves the engine unresponsive it is killed (its whole
process group) and the next :meth:`Engine.ensure` starts a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

REPO = Path(__file__).resolve().parent.parent

#: Resident memory above which the watchdog kills the engine (an attack that eats memory).
RSS_KILL = 2 * 1024 ** 3
#: Resident memory the show must stay under after any attack.
RSS_LIMIT = 1536 * 1024 ** 2
#: Growth of resident memory one attack may cause (measured after the attack settles).
RSS_GROWTH = 400 * 1024 ** 2
#: How long a frame, a /health answer or a reply may take before the show counts as stopped.
#: Generous (a loaded 2-core machine), far below what the bugs cause (> 60 s, or never).
LIVE_TIMEOUT = 8.0
HEALTH_TIMEOUT = 5.0
#: How long a fresh engine may take to show its first frames.
START_TIMEOUT = 180.0

MAPPING = """[meta]
name = "{name}"
[params]
speed = {{ default = 0.5, min = 0.0, max = 1.0 }}
{extra}
[latent]
keyframes = {{ seeds = [1, 2, 3] }}
walk = {{ seconds_per_key = 2.0 }}
[shaders]
chain = ["feedback"]
[[route]]
from = "level"
to = "shader.feedback.amount"
"""

SECRET_TEXT = '[aws_credentials]\nsecret_access_key = "AKIA-NOT-A-REAL-KEY"\n[database]\npassword = "hunter2"\n'
SECRET_WORDS = ("aws_credentials", "secret_access_key", "database", "password", "AKIA", "hunter2")
PRECIOUS = b"precious bytes the show must never touch\n" * 64


def free_port(kind=socket.SOCK_DGRAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def nested_toml(depth: int = 100_000) -> str:
    """A TOML document nested ``depth`` arrays deep (valid syntax; recursion for a parser)."""
    return "a = " + "[" * depth + "]" * depth + "\n"


def nested_isf(depth: int = 100_000) -> str:
    """An ISF shader whose JSON header nests ``depth`` arrays deep."""
    return ('/*{"ISFVSN": "2", "DEEP": ' + "[" * depth + "]" * depth + "}*/\n"
            "void main() { gl_FragColor = IMG_THIS_PIXEL(inputImage); }\n")


# -- the show folder ----------------------------------------------------------------------------

@dataclass
class ShowFolder:
    """``root/site/show`` (the engine's working folder and LJ_HOME) and ``root/site/outside``
    (sentinels next to it). ``root`` holds nothing else but the engine's stderr logs, so
    ``../../`` from the show lands in ``root``, which is snapshotted whole."""

    root: Path
    show: Path = field(init=False)
    outside: Path = field(init=False)

    def __post_init__(self):
        self.show = self.root / "site" / "show"
        self.outside = self.root / "site" / "outside"

    def make(self, bindings: str | None = None) -> "ShowFolder":
        from engine.audio.demo import write_demo_wav

        for sub in ("presets", "stills", "recordings", "mappings"):
            (self.show / sub).mkdir(parents=True, exist_ok=True)
        shutil.copytree(REPO / "shaders", self.show / "shaders", dirs_exist_ok=True)
        (self.show / "show.toml").write_text(MAPPING.format(name="main", extra=""))
        (self.show / "second.toml").write_text(
            MAPPING.format(name="second", extra="glow2 = { default = 0.1, min = 0.0, max = 1.0 }"))
        if bindings is not None:
            (self.show / "show.bindings.toml").write_text(bindings)
        write_demo_wav(self.show / "song.wav", seconds=20.0)
        self.outside.mkdir(parents=True, exist_ok=True)
        (self.outside / "precious.mp4").write_bytes(PRECIOUS)
        (self.outside / "secrets.toml").write_text(SECRET_TEXT)
        (self.root / "config").mkdir(exist_ok=True)
        return self

    def snapshot_outside(self) -> dict:
        """Every file under ``root`` except the show folder and the engine's stderr logs:
        {path: (size, mtime_ns, sha1)} (folders as "dir")."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            if self.show in path.parents or path == self.show or path.name.startswith("engine-"):
                continue
            if path.is_file():
                data = path.read_bytes()
                st = path.stat()
                out[str(path)] = (st.st_size, st.st_mtime_ns, hashlib.sha1(data).hexdigest())
            else:
                out[str(path)] = "dir"
        return out


# -- the running engine ------------------------------------------------------------------------

class FrameClock:
    """Receives the engine's per-frame OSC out and stamps each frame's arrival (monotonic)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.stamps: deque[float] = deque(maxlen=200_000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-clock", daemon=True)
        self._thread.start()

    def _run(self):
        # The kernel's arrival time of each datagram (SO_TIMESTAMPNS), so a receiver thread that
        # is scheduled late (a loaded machine, the attacks' own threads) neither bunches nor
        # stretches the frame times it reads.
        stamped = hasattr(socket, "SO_TIMESTAMPNS")
        if stamped:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_TIMESTAMPNS, 1)
        while not self._stop.is_set():
            try:
                data, anc, _, _ = self.sock.recvmsg(65536, 256)
            except OSError:
                continue
            if b"/lj/time" not in data:
                continue
            when = time.monotonic()
            for level, kind, raw in anc:
                if stamped and level == socket.SOL_SOCKET and kind == socket.SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", raw[:16])
                    when -= time.time() - (sec + nsec * 1e-9)  # realtime arrival -> monotonic
            self.stamps.append(when)

    def count(self) -> int:
        return len(self.stamps)

    def since(self, t: float) -> list[float]:
        return [s for s in list(self.stamps) if s >= t]

    def wait_frames(self, n: int, after: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.since(after)) >= n:
                return True
            time.sleep(0.02)
        return False

    def longest_gap(self, start: float, end: float) -> float:
        """Longest time without a frame inside [start, end] (edges count as gap ends)."""
        stamps = [start] + sorted(s for s in list(self.stamps) if start <= s <= end) + [end]
        return max(b - a for a, b in zip(stamps, stamps[1:]))

    def median_frame(self, seconds: float = 3.0) -> float:
        """Median frame time over the last ``seconds`` of frames."""
        now = time.monotonic()
        s = sorted(x for x in list(self.stamps) if x >= now - seconds)
        gaps = [b - a for a, b in zip(s, s[1:])]
        return statistics.median(gaps) if gaps else float("nan")

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class Engine:
    """One ``lj run --headless`` in a show folder, started in its own process group."""

    def __init__(self, folder: ShowFolder, name: str = "engine"):
        self.folder = folder
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.clock: FrameClock | None = None
        self.killed_for_memory = False
        self.starts = 0
        self.peak_rss = 0

    # lifecycle
    def start(self) -> None:
        self.clock = FrameClock()
        self.osc_port = free_port()
        self.query_port = free_port(socket.SOCK_STREAM)
        self.health_port = free_port(socket.SOCK_STREAM)
        show = self.folder.show
        cmd = [sys.executable, "-m", "engine", "run", "--headless",
               "--audio", str(show / "song.wav"), "--loop", "--mapping", str(show / "show.toml"),
               "--size", "64", "--fixed-size", "--target-fps", "20", "--osc-smoothing", "0",
               "--osc-port", str(self.osc_port), "--oscquery-port", str(self.query_port),
               "--health-port", str(self.health_port), "--osc-out", f"127.0.0.1:{self.clock.port}",
               "--no-zeroconf"]
        env = dict(os.environ, LJ_HOME=str(show), PYTHONPATH=str(REPO),
                   XDG_CONFIG_HOME=str(self.folder.root / "config"))
        env.pop("DISPLAY", None)
        self.starts += 1
        self.errfile = self.folder.root / f"engine-{self.name}-{self.starts}.err"
        self.proc = subprocess.Popen(cmd, cwd=show, env=env, start_new_session=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.errfile, "wb"))
        self.killed_for_memory = False
        threading.Thread(target=self._watch_memory, args=(self.proc,), daemon=True).start()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> bool:
        """True once frames arrive and /health answers; False if the engine died or timed out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if self.clock.count() >= 10 and self.health() is not None:
                return True
            time.sleep(0.1)
        return False

    def ensure(self) -> None:
        """A running, rendering engine (a fresh one if an attack killed the last)."""
        if self.alive() and self.clock.wait_frames(3, time.monotonic(), LIVE_TIMEOUT):
            return
        self.stop()
        self.start()
        if not self.wait_ready():
            raise RuntimeError(f"the engine did not start: {self.stderr_tail()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Kill the engine's whole process group (never waits on a hung engine)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self.clock is not None:
            self.clock.close()
            self.clock = None

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            return self.errfile.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    # observation
    def rss(self) -> int:
        """Resident memory of the engine process in bytes (0 once it is gone)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
        except (OSError, AttributeError):
            pass
        return 0

    def _watch_memory(self, proc):
        while proc.poll() is None:
            rss = self.rss() if proc is self.proc else 0
            self.peak_rss = max(self.peak_rss, rss)
            if rss > RSS_KILL:
                self.killed_for_memory = True
                os.killpg(proc.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    def health(self, timeout: float = HEALTH_TIMEOUT) -> dict | None:
        """The JSON of GET /health, or None when it does not answer within ``timeout``."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/health",
                                        timeout=timeout) as reply:
                return json.loads(reply.read())
        except (OSError, ValueError):
            return None

    # sending
    def send(self, dgram: bytes) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(dgram, ("127.0.0.1", self.osc_port))

    def get(self, address: str, timeout: float = 2.0) -> dict:
        """``/lj/get address``: {address: value} of every reply within ``timeout``."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.sendto(message("/lj/get", address), ("127.0.0.1", self.osc_port))
            return _replies(s, timeout)

    def value(self, address: str, timeout: float = 2.0):
        return self.get(address, timeout).get(address)

    def wait_value(self, address: str, pred, timeout: float):
        """Poll ``address`` until ``pred(value)``; returns the last value seen."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.value(address, timeout=1.0)
            if pred(value):
                return value
            time.sleep(0.2)
        return value


def _replies(sock: socket.socket, timeout: float) -> dict:
    out = {}
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except OSError:
            return out
        try:
            for timed in OscPacket(data).messages:
                params = timed.message.params
                out[timed.message.address] = params[0] if len(params) == 1 else params
        except Exception:  # noqa: BLE001 - a garbled reply is no reply
            continue
        if out:
            sock.settimeout(0.05)  # the rest of a multi-datagram reply follows at once
            deadline = min(deadline, time.monotonic() + 0.3)


def message(address: str, *args) -> bytes:
    b = OscMessageBuilder(address)
    for a in args:
        b.add_arg(a)
    return b.build().dgram


def bundle(messages: list[bytes], when: float | None = None) -> bytes:
    """One bundle of encoded messages, due at Unix time ``when`` (None: immediately)."""
    if when is None:
        tag = struct.pack(">Q", 1)
    else:  # NTP time: seconds since 1900 and a 32-bit fraction
        secs = when + 2208988800
        tag = struct.pack(">II", int(secs), int((secs % 1) * 2 ** 32))
    return b"#bundle\x00" + tag + b"".join(struct.pack(">i", len(m)) + m for m in messages)


# -- checks shared by every attack -------------------------------------------------------------

@dataclass
class Result:
    """What one attack did to the show."""

    name: str
    problems: list[str]
    gap_s: float          # longest time without a frame from the attack's start to recovery
    median_s: float       # the median frame time just before the attack

    @property
    def survived(self) -> bool:
        return not self.problems

    @property
    def gap_ratio(self) -> float:
        return self.gap_s / self.median_s if self.median_s > 0 else float("inf")


def run_attack(engine: Engine, name: str, attack) -> Result:
    """Run ``attack(engine) -> [problems]`` on a rendering engine and check what any attack must
    leave intact: the process, frames, /health, memory, the files outside the show folder.

    An engine an attack got through to is killed here (its process group), so the next attack
    gets a fresh one from :meth:`Engine.ensure`: no test inherits a hung, bloated or stuck-loader
    engine from another.
    """
    try:
        engine.ensure()
    except RuntimeError as exc:  # not this attack's doing: say so, and let the next one retry
        engine.stop()
        return Result(name, [f"not run: {str(exc).splitlines()[0]}"], float("nan"), float("nan"))
    median = engine.clock.median_frame(2.0)
    before = engine.folder.snapshot_outside()
    rss0 = engine.rss()
    h0 = engine.health() or {}
    t0 = time.monotonic()
    try:
        problems = list(attack(engine))
    except Exception as exc:  # noqa: BLE001 - the attack's own bookkeeping failed: report it
        problems = [f"the attack's checks raised {type(exc).__name__}: {exc}"]
    t1 = time.monotonic()
    problems += liveness(engine, t1, h0.get("frames", 0))
    recovered = engine.clock.since(t1) if engine.clock else []
    end = recovered[0] if recovered else float("inf")
    gap = engine.clock.longest_gap(t0, end) if recovered else float("inf")
    rss1 = engine.rss()
    if engine.killed_for_memory:
        problems.append(f"resident memory passed {RSS_KILL >> 20} MB: killed")
    elif rss1 > RSS_LIMIT or (rss0 and rss1 - rss0 > RSS_GROWTH):
        problems.append(f"resident memory {rss0 >> 20} MB -> {rss1 >> 20} MB")
    after = engine.folder.snapshot_outside()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if changed:
        problems.append(f"files outside the show folder changed: {changed[:5]}")
    if problems:  # the next attack must not inherit a hung, bloated or stuck engine
        engine.stop()
    return Result(name, problems, gap, median)


def liveness(engine: Engine, after: float, frames_before: int) -> list[str]:
    """The process runs, frames keep coming and /health answers with a growing frame count."""
    if not engine.alive():
        tail = engine.stderr_tail(400).strip().splitlines()
        return [f"the engine exited ({engine.proc.returncode}): {tail[-1] if tail else ''}"]
    problems = []
    if not engine.clock.wait_frames(5, after, LIVE_TIMEOUT):
        problems.append(f"no frames for {LIVE_TIMEOUT:.0f} s after the attack")
    deadline = time.monotonic() + LIVE_TIMEOUT
    answer = None
    while time.monotonic() < deadline:
        answer = engine.health(timeout=HEALTH_TIMEOUT)
        if answer is not None and answer.get("frames", 0) > frames_before:
            break
        time.sleep(0.2)
    if answer is None:
        problems.append(f"/health did not answer within {HEALTH_TIMEOUT:.0f} s")
    elif answer.get("frames", 0) <= frames_before:
        problems.append(f"/health frames stuck at {answer.get('frames')}")
    return problems


def mapping_name(engine: Engine, want: str, timeout: float = 8.0) -> str | None:
    return engine.wait_value("/lj/state/mapping", lambda v: v == want, timeout)


def loads_still_apply(engine: Engine) -> list[str]:
    """A valid mapping inside the show folder still loads (and the main one comes back)."""
    problems = []
    engine.send(message("/lj/mapping/load", str(engine.folder.show / "second.toml")))
    got = mapping_name(engine, "second")
    if got != "second":
        problems.append(f"a later valid /lj/mapping/load never applied (mapping is {got!r})")
    engine.send(message("/lj/mapping/load", str(engine.folder.show / "show.toml")))
    mapping_name(engine, "main")
    return problems


def param_still_settable(engine: Engine, name: str = "speed", value: float = 0.3) -> list[str]:
    engine.send(message(f"/lj/param/{name}", value))
    got = engine.wait_value(f"/lj/param/{name}",
                            lambda v: isinstance(v, float) and abs(v - value) < 1e-3, 4.0)
    if not (isinstance(got, float) and abs(got - value) < 1e-3):
        return [f"/lj/param/{name} {value} then /lj/get read {got!r}"]
    return []


# -- the attacks (each returns its own problems; run_attack adds the common checks) ------------

def attack_pattern_param(engine: Engine) -> list[str]:
    """One datagram: ``/lj/param/`` + 120 ``*`` + ``Z`` (a backtracking regex today)."""
    engine.send(message("/lj/param/" + "*" * 120 + "Z", 0.5))
    time.sleep(0.5)
    return param_still_settable(engine, "speed", 0.31)


def attack_pattern_get(engine: Engine) -> list[str]:
    """``/lj/get "/lj/state/" + 120 * "*" + "Z"``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.sendto(message("/lj/get", "/lj/state/" + "*" * 120 + "Z"), ("127.0.0.1", engine.osc_port))
        time.sleep(0.5)
    return param_still_settable(engine, "speed", 0.32)


def attack_load_dev_zero(engine: Engine) -> list[str]:
    """``/lj/mapping/load /dev/zero``: an endless file (read whole today)."""
    engine.send(message("/lj/mapping/load", "/dev/zero"))
    time.sleep(3.0)  # long enough for an unbounded read to pass the memory bound
    return loads_still_apply(engine)


def attack_load_fifo(engine: Engine) -> list[str]:
    """``/lj/mapping/load`` of a FIFO in the show folder that nobody ever writes."""
    fifo = engine.folder.show / "pipe.toml"
    if not fifo.exists():
        os.mkfifo(fifo)
    engine.send(message("/lj/mapping/load", str(fifo)))
    time.sleep(1.0)
    return loads_still_apply(engine)


def attack_load_deep_toml(engine: Engine) -> list[str]:
    """``/lj/mapping/load`` of a mapping nested 100,000 arrays deep."""
    deep = engine.folder.show / "deep_mapping.toml"
    deep.write_text(nested_toml())
    engine.send(message("/lj/mapping/load", str(deep)))
    time.sleep(1.5)
    return loads_still_apply(engine)


def _error_after_load(engine: Engine, path: str) -> str:
    """/lj/state/error after loading ``path`` (the main mapping reloaded first to clear it)."""
    engine.send(message("/lj/mapping/load", str(engine.folder.show / "show.toml")))
    engine.wait_value("/lj/state/error", lambda v: v == "", 4.0)
    engine.send(message("/lj/mapping/load", path))
    value = engine.wait_value("/lj/state/error", lambda v: bool(v), 4.0)
    return value if isinstance(value, str) else repr(value)


def attack_secret_leak(engine: Engine) -> list[str]:
    """Load a secrets file outside the show folder: the error must not tell what is in it, nor
    that it exists (the same answer as for a path that does not exist)."""
    secret = str(engine.folder.outside / "secrets.toml")
    missing = str(engine.folder.outside / "missing.toml")
    exists = _error_after_load(engine, secret)
    absent = _error_after_load(engine, missing)
    engine.send(message("/lj/mapping/load", str(engine.folder.show / "show.toml")))
    problems = [f"/lj/state/error shows {w!r} from the secrets file: {exists[:160]}"
                for w in SECRET_WORDS if w in exists][:1]
    same = exists.replace(secret, "<path>").replace("secrets.toml", "<name>")
    other = absent.replace(missing, "<path>").replace("missing.toml", "<name>")
    if same != other:
        problems.append(f"an existing and a missing outside file answer differently: "
                        f"{exists[:120]!r} vs {absent[:120]!r}")
    return problems


def attack_deep_preset(engine: Engine) -> list[str]:
    """``presets/deep.toml`` nested 100,000 deep, then ``/lj/preset/load deep``."""
    deep = engine.folder.show / "presets" / "deep.toml"
    deep.write_text(nested_toml())
    try:
        engine.send(message("/lj/preset/load", "deep"))
        time.sleep(1.5)
        return param_still_settable(engine, "speed", 0.33)
    finally:
        deep.unlink(missing_ok=True)


def attack_deep_shader(engine: Engine) -> list[str]:
    """Save a shader of the running chain with an ISF header nested 100,000 deep (the show
    watches its shader folder, ``$LJ_HOME/shaders``, and reloads edited effects)."""
    path = engine.folder.show / "shaders" / "feedback.fs"
    good = path.read_bytes()
    try:
        path.write_text(nested_isf())
        time.sleep(2.0)  # the loop looks at the shader files every 20 frames
        return param_still_settable(engine, "speed", 0.34)
    finally:
        path.write_bytes(good)


def attack_record_paths(engine: Engine) -> list[str]:
    """``/lj/record/start`` with an existing file outside the folder and with ``../`` paths."""
    show = engine.folder.show
    precious = engine.folder.outside / "precious.mp4"
    escapes = ["../../lj-adversary-escape.mp4", "../../../lj-adversary-escape3.mp4",
               "../outside/escape.mp4", "recordings/../../escape2.mp4"]
    for target in [str(precious)] + escapes:
        engine.send(message("/lj/record/start", target))
        time.sleep(0.8)
        engine.send(message("/lj/record/stop"))
        time.sleep(0.5)
    problems = []
    if precious.read_bytes() != PRECIOUS:
        problems.append(f"{precious} was overwritten")
    for target in escapes:
        for base in (show, show / "recordings"):
            landed = (base / target).resolve()
            if show.resolve() not in landed.parents and landed.exists():
                problems.append(f"/lj/record/start {target} wrote {landed}")
                landed.unlink()
    return problems


def _settle(count, timeout: float = 20.0, quiet: float = 1.5) -> int:
    """``count()`` once it has not changed for ``quiet`` seconds (at most ``timeout``)."""
    deadline = time.monotonic() + timeout
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return last


#: At most this many presets may exist after a flood of /lj/preset/save (the issue's flood of
#: 2,000 names made 3,736 files); at most this many new stills from a trigger flood.
MAX_FLOOD_PRESETS = 1024
MAX_FLOOD_STILLS = 20


def attack_preset_flood(engine: Engine) -> list[str]:
    """2,000 ``/lj/preset/save flood<N>`` names (in bundles of 50, paced so none is lost on the
    wire or in the command queue)."""
    presets = engine.folder.show / "presets"
    names = [f"flood{i:04d}" for i in range(2000)]
    try:
        for i in range(0, len(names), 50):
            engine.send(bundle([message("/lj/preset/save", n) for n in names[i:i + 50]]))
            time.sleep(0.03)
        saved = _settle(lambda: sum(1 for p in presets.glob("flood*.toml")))
        files = sum(1 for _ in presets.iterdir())
        if saved > MAX_FLOOD_PRESETS:
            return [f"2,000 /lj/preset/save names made {saved} presets ({files} files)"]
        return []
    finally:
        for p in presets.glob("flood*"):
            p.unlink(missing_ok=True)


def attack_still_flood(engine: Engine) -> list[str]:
    """400 ``/lj/trigger/still`` over about 4 s."""
    stills = engine.folder.show / "stills"
    before = set(stills.glob("*"))
    try:
        for _ in range(400):
            engine.send(message("/lj/trigger/still"))
            time.sleep(0.01)
        made = _settle(lambda: len(set(stills.glob("*")) - before), timeout=8.0)
        if made > MAX_FLOOD_STILLS:
            return [f"a 4 s /lj/trigger/still flood saved {made} stills"]
        return []
    finally:
        for p in set(stills.glob("*")) - before:
            p.unlink(missing_ok=True)


def attack_junk_params(engine: Engine) -> list[str]:
    """1,100 unknown ``/lj/param/junkN`` (one bundle), then a mapping declaring a new parameter:
    it must be settable, and the declared ``speed`` too."""
    engine.send(bundle([message(f"/lj/param/junk{i}", 0.5) for i in range(1100)]))
    time.sleep(0.5)
    problems = []
    engine.send(message("/lj/mapping/load", str(engine.folder.show / "second.toml")))
    if mapping_name(engine, "second") != "second":
        problems.append("second.toml did not load")
    else:
        problems += param_still_settable(engine, "glow2", 0.4)
    problems += param_still_settable(engine, "speed", 0.35)
    engine.send(message("/lj/mapping/load", str(engine.folder.show / "show.toml")))
    mapping_name(engine, "main")
    return problems


def attack_future_bundles(engine: Engine) -> list[str]:
    """1,100 messages time-tagged three years ahead, then a bundle due in 1 s: it must apply."""
    engine.send(message("/lj/param/speed", 0.75))
    time.sleep(0.2)
    far = time.time() + 3 * 365 * 86400  # (ten years would pass NTP's 2036 rollover)
    engine.send(bundle([message("/lj/param/speed", 0.9) for _ in range(1100)], when=far))
    time.sleep(0.3)
    engine.send(bundle([message("/lj/param/speed", 0.25)], when=time.time() + 1.0))
    got = engine.wait_value("/lj/param/speed",
                            lambda v: isinstance(v, float) and abs(v - 0.25) < 1e-3, 4.0)
    if not (isinstance(got, float) and abs(got - 0.25) < 1e-3):
        return [f"the bundle due in 1 s was not applied (speed is {got!r})"]
    return []


def attack_slowloris(engine: Engine) -> list[str]:
    """200 idle TCP connections and one client sending a byte a second to /health's port, then
    ``GET /health`` must still answer."""
    conns = []
    stop = threading.Event()

    def drip(sock):
        for ch in b"GET /health HTTP/1.1\r\nHost: x\r\n":
            if stop.wait(1.0):
                return
            try:
                sock.sendall(bytes([ch]))
            except OSError:
                return

    try:
        slow = socket.create_connection(("127.0.0.1", engine.health_port), timeout=5)
        conns.append(slow)
        threading.Thread(target=drip, args=(slow,), daemon=True).start()
        for _ in range(200):
            try:
                conns.append(socket.create_connection(("127.0.0.1", engine.health_port), timeout=2))
            except OSError:
                break
        time.sleep(1.0)
        t = time.monotonic()
        answer = engine.health(timeout=10.0)
        if answer is None:
            return [f"/health did not answer within 10 s under {len(conns)} held connections"]
        return [] if time.monotonic() - t < 10.0 else ["/health took over 10 s"]
    finally:
        stop.set()
        for c in conns:
            c.close()


def attack_oscquery_burst(engine: Engine) -> list[str]:
    """200 concurrent OSCQuery GETs: every one answered."""
    failures = []
    lock = threading.Lock()

    def fetch():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{engine.query_port}/", timeout=15) as r:
                json.loads(r.read())
        except Exception as exc:  # noqa: BLE001 - any failure counts
            with lock:
                failures.append(type(exc).__name__)

    threads = [threading.Thread(target=fetch, daemon=True) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    if failures:
        return [f"{len(failures)} of 200 concurrent OSCQuery GETs failed ({sorted(set(failures))})"]
    return []


#: Every attack on the shared engine, in the order the benchmark runs them.
ATTACKS = {
    "osc pattern /lj/param/*x120Z": attack_pattern_param,
    "osc pattern /lj/get /lj/state/*x120Z": attack_pattern_get,
    "mapping/load /dev/zero": attack_load_dev_zero,
    "mapping/load FIFO": attack_load_fifo,
    "mapping/load nested 100k TOML": attack_load_deep_toml,
    "mapping/load secrets outside": attack_secret_leak,
    "preset/load nested 100k": attack_deep_preset,
    "shader saved with nested 100k ISF header": attack_deep_shader,
    "record/start outside paths": attack_record_paths,
    "2,000 preset/save names": attack_preset_flood,
    "trigger/still flood": attack_still_flood,
    "1,100 unknown params": attack_junk_params,
    "1,100 far-future bundles": attack_future_bundles,
    "HTTP slowloris + 200 idle": attack_slowloris,
    "200 concurrent OSCQuery GETs": attack_oscquery_burst,
}


def startup_with_nested_bindings(root: Path) -> list[str]:
    """A show whose ``show.bindings.toml`` is nested 100,000 deep must start and render."""
    folder = ShowFolder(root).make(bindings=nested_toml())
    engine = Engine(folder, "bindings")
    try:
        engine.start()
        if not engine.wait_ready():
            tail = engine.stderr_tail(600).strip().splitlines()
            return [f"the show did not start: {tail[-1] if tail else 'no frames'}"]
        return liveness(engine, time.monotonic(), 0)
    finally:
        engine.stop()
