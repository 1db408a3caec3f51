"""Play Latent Jockey from Python over OSC (python-osc only).

    .venv/bin/python examples/osc_client.py [--host 127.0.0.1] [--port 9000] [--mapping PATH]

Sets a parameter, sweeps a fader for two seconds at 20 Hz (the engine smooths the steps), fires a
trigger with a button press/release, sets every parameter at once with an address pattern, asks
for values with ``/lj/get`` and prints the replies, and loads a mapping if one is given. Then it
holds shader inputs, truncation and noise directly (``/lj/fx/...``, 0-1) and releases them, and
learns a controller fader (``/1/fader1``) for ``param.speed``. Start the engine first (``lj run``).
"""

from __future__ import annotations

import argparse
import socket
import time

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket


class Player:
    """A tiny OSC client whose socket also receives the engine's replies to /lj/get and /lj/list."""

    def __init__(self, host: str, port: int, timeout: float = 1.0):
        self.target = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0", 0))
        self.sock.settimeout(timeout)

    def send(self, address: str, *args: object) -> None:
        msg = OscMessageBuilder(address)
        for a in args:
            msg.add_arg(a)
        self.sock.sendto(msg.build().dgram, self.target)

    def replies(self) -> dict[str, list]:
        """Every reply that arrives until the socket stays quiet for its timeout."""
        got: dict[str, list] = {}
        while True:
            try:
                data, _ = self.sock.recvfrom(65535)
            except (socket.timeout, BlockingIOError):
                return got
            for timed in OscPacket(data).messages:
                got[timed.message.address] = list(timed.message.params)

    def get(self, address: str) -> dict[str, list]:
        """Ask for the value(s) at ``address`` (may be a pattern) and collect the answer."""
        self.send("/lj/get", address)
        return self.replies()

    def sweep(self, name: str, start: float, end: float, seconds: float, rate: float = 20.0) -> None:
        """Move fader ``name`` from ``start`` to ``end`` in steps, like a controller would."""
        steps = max(1, int(seconds * rate))
        for i in range(steps + 1):
            self.send(f"/lj/param/{name}", start + (end - start) * i / steps)
            time.sleep(1.0 / rate)

    def close(self) -> None:
        self.sock.close()


def play(host: str, port: int, mapping: str | None = None, sweep_seconds: float = 2.0, reply_timeout: float = 1.0,
         out=print) -> dict[str, list]:
    """One short performance; returns what the last ``/lj/get /lj/param/*`` answered."""
    p = Player(host, port, timeout=reply_timeout)
    try:
        p.send("/lj/param/speed", 0.35)
        p.sweep("glow", 0.0, 1.0, sweep_seconds)
        p.send("/lj/trigger/flash", 1.0)  # button press ...
        p.send("/lj/trigger/flash", 0.0)  # ... and release (ignored)
        p.send("/lj/param/*", 0.5)  # every known parameter at once
        p.send("/lj/param/speed", 0.25)
        if mapping:
            p.send("/lj/mapping/load", mapping)
        time.sleep(0.05)
        out("speed:", p.get("/lj/param/speed"))
        values = p.get("/lj/param/*")
        out("all params:", values)
        p.send("/lj/list")
        out("address space:", p.replies())
        return values
    finally:
        p.close()


def play_direct(host: str, port: int, effect: str = "kaleido", inputs=("segments", "zoom"),
                reply_timeout: float = 1.0, out=print) -> dict[str, list]:
    """Shader inputs, truncation and noise directly (0-1 onto their real ranges), then hand them
    back to the mapping; returns what ``/lj/get`` answered while they were held."""
    p = Player(host, port, timeout=reply_timeout)
    try:
        for i, name in enumerate(inputs):
            p.send(f"/lj/fx/{effect}/{name}", 0.25 * (i + 1))  # 0-1 = the input's ISF MIN..MAX
        p.send("/lj/truncation", 0.7)  # psi 0.7
        p.send("/lj/noise", 0.2)
        time.sleep(0.05)
        held = p.get(f"/lj/fx/{effect}/*")
        held.update(p.get("/lj/{truncation,noise}"))
        out("held:", held)
        p.send("/lj/release", f"/lj/fx/{effect}/*")  # the mapping drives the effect again ...
        p.send("/lj/release")  # ... and everything else
        return held
    finally:
        p.close()


def play_learn(host: str, port: int, target: str = "param.speed", control: str = "/1/fader1",
               values=(0.0, 0.5, 1.0), reply_timeout: float = 1.0, out=print) -> dict[str, list]:
    """Learn: put ``target`` in learn mode, move a controller's fader (an address outside /lj/),
    which binds it, then move it again; returns the target's value as ``/lj/get`` answers it."""
    p = Player(host, port, timeout=reply_timeout)
    try:
        p.send("/lj/learn", target)
        time.sleep(0.05)
        for v in values:
            p.send(control, v)  # the first one is bound, every one drives the target
            time.sleep(0.02)
        address = "/lj/" + target.replace(".", "/") if not target.startswith("/") else target
        got = p.get(address)
        out(f"{control} -> {target}:", got)
        return got
    finally:
        p.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--mapping", help="a mapping file for the engine to load")
    ap.add_argument("--effect", default="feedback", help="the effect whose inputs to hold (default feedback)")
    ap.add_argument("--inputs", default="amount,zoom", help="its inputs, comma-separated (default amount,zoom)")
    args = ap.parse_args()
    play(args.host, args.port, args.mapping)
    play_direct(args.host, args.port, args.effect, args.inputs.split(","))
    play_learn(args.host, args.port, "param.speed", "/1/fader1")


if __name__ == "__main__":
    main()
