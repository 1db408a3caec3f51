"""How many files a show may write on request, how fast, and where.

Anything that reaches the show — a key, an OSC peer, a cue — can ask it to write a file: a still
(``s``, ``/lj/trigger/still``), a preset (``/lj/preset/save``), a latent (``/lj/latent/save``), a
recording (``r``, ``/lj/record/start``). The names and folders are checked by
:mod:`engine.safeio`; this module bounds the *number*: each kind of file has a :class:`WriteGate`,
a token bucket (``rate`` files a second on average, ``burst`` at once) and a cap on the files one
show writes in that folder (one run of ``lj run``). A request over either bound is refused and
counted; refusals are logged at most once per ``interval`` seconds (with the count of those not
logged since), so a flood of requests costs the show a counter, never a log line per message.

=========== ====== ====== ===== =========================================================
kind         rate   burst  cap   folder
=========== ====== ====== ===== =========================================================
still        2/s    5      500   ``--stills``
preset       1/s    5      200   ``--presets`` (each save is a ``.toml`` and a ``.npy``)
latent       2/s    10     200   ``latents/`` beside the mapping file
recording    0.5/s  3      50    ``--record-dir``
=========== ====== ====== ===== =========================================================

:func:`check_folder` is the start-up check that a folder option does not name an existing file.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from engine.errors import LJError

__all__ = ["GATES", "WriteGate", "check_folder"]

log = logging.getLogger("lj.files")

#: kind -> (rate per second, burst, cap per folder per show); see the module docstring.
GATES = {
    "still": (2.0, 5, 500),
    "preset": (1.0, 5, 200),
    "latent": (2.0, 10, 200),
    "recording": (0.5, 3, 50),
}
#: Seconds between two log lines about refused writes of one kind.
LOG_INTERVAL = 5.0


def check_folder(path: str | Path, option: str) -> Path:
    """``path`` as a Path if it is a folder or does not exist yet; one-line LJError if it is a
    file (or anything else that is not a folder), naming the option that gave it."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise LJError(f"{option} {p}: exists and is not a folder (give a folder, or a path that "
                      "does not exist yet)")
    return p


class WriteGate:
    """The token bucket and cap for one kind of file (``what``: ``still``, ``preset``...).

    Call :meth:`admit` before writing (False: refused, already counted and logged), then
    :meth:`wrote` once the file exists, or :meth:`refuse` with the reason a write was refused
    for another cause (a bad name, an existing file), so that is counted and rate-logged too.
    ``clock`` is injectable for tests (default :func:`time.monotonic`).
    """

    def __init__(self, what: str, rate: float | None = None, burst: int | None = None,
                 cap: int | None = None, clock=time.monotonic, interval: float = LOG_INTERVAL):
        d_rate, d_burst, d_cap = GATES.get(what, (1.0, 5, 100))
        self.what = what
        self.rate = float(d_rate if rate is None else rate)
        self.burst = int(d_burst if burst is None else burst)
        self.cap = int(d_cap if cap is None else cap)
        self._clock = clock
        self._interval = float(interval)
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._logged_at: float | None = None
        self._unlogged = 0
        self.written = 0      # files written through this gate
        self.refused = 0      # requests refused (rate, cap, name, existing file)
        self.last_refusal = ""

    def admit(self) -> bool:
        """True if one more file may be written now (a token is taken); False: refused."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self.written >= self.cap:
            self.refuse(f"this show has written {self.cap} {self.what} files already (the cap "
                        "per session); restart the show to write more")
            return False
        if self._tokens < 1.0:
            self.refuse(f"more than {self.rate:g} {self.what} requests a second (burst "
                        f"{self.burst})")
            return False
        self._tokens -= 1.0
        return True

    def wrote(self) -> None:
        self.written += 1

    def refuse(self, reason: str) -> None:
        """Count a refused write; log it unless another refusal was logged within the interval."""
        self.refused += 1
        self.last_refusal = reason
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < self._interval:
            self._unlogged += 1
            return
        more = (f" ({self._unlogged} more refused since the last message)"
                if self._unlogged else "")
        self._logged_at, self._unlogged = now, 0
        log.warning("%s not written: %s%s", self.what, reason, more)

    def state(self) -> dict:
        return {f"{self.what}_written": self.written, f"{self.what}_refused": self.refused}
