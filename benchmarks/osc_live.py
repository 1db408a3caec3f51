"""OSC against the running live loop: control-to-frame latency, and messages/s at the frame rate.

    .venv/bin/python benchmarks/osc_live.py [--size 128] [--phase 6] [--rates 1000,5000,10000]

The real live loop (``run_live``, headless EGL, the built-in generator, ``mappings/osc_faders.toml``
with its feedback -> rgb_shift -> grade chain, the demo song paced at real time, OSC smoothing off)
runs in this process; OSC comes from another process (its own GIL, like a controller) over UDP on
127.0.0.1. Every frame's parameters are recorded where the control stage applies them
(``LiveControl.frame``: the parameters the generator and the shader chain get for that frame).

1. **Control-to-frame latency**: 150 messages ``/lj/fx/feedback/amount <v>`` with distinct values,
   at random gaps of 60-140 ms. For each, the time from ``sendto`` to the start of the first frame
   whose parameters carry ``v``, printed in ms and as a share of the mean frame period of that
   phase. (What the window shows is one frame later again: the loop draws frame N-1 while the
   generator makes frame N.)
2. **Messages handled while holding the frame rate**: phases of ``--phase`` seconds, a flood at
   each rate (half ``/lj/param/<name>``, half ``/lj/fx/...``, all literal) with a no-OSC phase
   between every two, ``--repeats`` rounds. Printed per rate: frames per second, its ratio to the
   mean of the no-OSC phases just before and after (the median over the rounds: the machine's
   other work moves the frame rate too), messages handled per second (the server's counter) and
   their ratio to the offered rate.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pythonosc.osc_message_builder import OscMessageBuilder  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TARGET = "/lj/fx/feedback/amount"
FLOOD = ["/lj/param/speed", "/lj/param/morph", "/lj/param/trails", "/lj/param/hue",
         "/lj/fx/rgb_shift/angle", "/lj/fx/grade/contrast", "/lj/fx/feedback/zoom", "/lj/noise"]


def _msg(address: str, value: float) -> bytes:
    b = OscMessageBuilder(address)
    b.add_arg(float(value))
    return b.build().dgram


def _latency_sender(port: int, n: int, sent_at, go) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rng = random.Random(1)
    go.wait()
    for k in range(n):
        time.sleep(rng.uniform(0.06, 0.14))
        data = _msg(TARGET, (k + 1) / (n + 1))
        sent_at[k] = time.monotonic()
        sock.sendto(data, ("127.0.0.1", port))
    sock.close()


def _flood(port: int, rate: int, seconds: float, go, done) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    msgs = [_msg(a, (i % 100) / 100) for i in range(100) for a in FLOOD]
    go.wait()
    t0 = time.monotonic()
    count = int(rate * seconds)
    batch = max(1, rate // 1000)
    for i in range(count):
        if i % batch == 0:
            due = t0 + i / rate
            while (now := time.monotonic()) < due:
                time.sleep(min(0.0005, due - now))
        try:
            sock.sendto(msgs[i % len(msgs)], ("127.0.0.1", port))
        except OSError:
            pass
    done.value = time.monotonic() - t0
    sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128, help="generator/output size (default 128)")
    ap.add_argument("--phase", type=float, default=3.0, help="seconds per load phase")
    ap.add_argument("--rates", default="1000,5000,10000", help="flood rates, messages/s")
    ap.add_argument("--latency-messages", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the flood phases")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r]

    import engine.live as live
    from engine.audio.demo import demo_song
    from engine.control.hooks import LiveControl
    from engine.live import LiveOptions, StopFlag, run_live

    sys.path.insert(0, str(ROOT / "tests"))
    from support import PacedSource, free_port

    frames: list[tuple[float, float]] = []  # (monotonic time the frame's parameters were set, value)
    holder: dict = {}

    class Recording(LiveControl):
        def __init__(self, controls):
            super().__init__(controls)
            holder["controls"] = controls

        def frame(self, params, snap, session=None):
            super().frame(params, snap, session)
            frames.append((time.monotonic(), params.uniforms.get("feedback.amount", -1.0)))

    live.LiveControl = Recording
    port = free_port()
    total = 20 + args.phase * (2 * len(rates) * args.repeats + 1) + args.latency_messages * 0.1 + 30
    samples, sr, _ = demo_song(seconds=total)
    opts = LiveOptions(mapping=str(ROOT / "mappings" / "osc_faders.toml"), size=args.size,
                       headless=True, osc_port=port, oscquery_port=None, zeroconf=False,
                       osc_smoothing=0.0, max_seconds=total, watch=False)
    stop = StopFlag()
    thread = threading.Thread(target=run_live, args=(PacedSource(samples, sr), opts, stop), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while len(frames) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2.0)  # past the start-up frames
    controls = holder["controls"]

    def window(t0: float, t1: float) -> list[tuple[float, float]]:
        return [f for f in frames if t0 <= f[0] < t1]

    def fps(t0: float, t1: float) -> float:
        w = window(t0, t1)
        return (len(w) - 1) / (w[-1][0] - w[0][0]) if len(w) > 1 else 0.0

    # -- 1. latency --------------------------------------------------------------------------
    n = args.latency_messages
    sent_at = mp.Array("d", n, lock=False)
    go = mp.Event()
    child = mp.Process(target=_latency_sender, args=(port, n, sent_at, go))
    child.start()
    t_lat0 = time.monotonic()
    go.set()
    child.join()
    time.sleep(0.5)
    t_lat1 = time.monotonic()
    period = 1.0 / fps(t_lat0, t_lat1)
    times = np.array([f[0] for f in frames])
    values = np.array([f[1] for f in frames])
    lat = []
    for k in range(n):
        v = (k + 1) / (n + 1)
        hit = np.nonzero((np.abs(values - v) < 1e-6) & (times >= sent_at[k]))[0]
        if len(hit):
            lat.append(times[hit[0]] - sent_at[k])
    lat = np.asarray(lat)
    print(f"live loop: {args.size}x{args.size}, osc_faders.toml, headless; frame period during the "
          f"latency phase {period * 1e3:.1f} ms ({1 / period:.0f} fps)")
    print(f"control-to-frame latency over {len(lat)}/{n} messages: p50 {np.median(lat) * 1e3:.1f} ms "
          f"= {np.median(lat) / period:.2f} frame, p90 {np.percentile(lat, 90) * 1e3:.1f} ms = "
          f"{np.percentile(lat, 90) / period:.2f} frame, max {lat.max() * 1e3:.1f} ms = "
          f"{lat.max() / period:.2f} frame")

    # -- 2. throughput at the frame rate ------------------------------------------------------
    rows = []

    def phase(rate: int) -> None:
        before = controls.stats["messages"]
        cpu0 = time.process_time()
        t0 = time.monotonic()
        if rate:
            go, done = mp.Event(), mp.Value("d", 0.0)
            child = mp.Process(target=_flood, args=(port, rate, args.phase, go, done))
            child.start()
            t0 = time.monotonic()
            go.set()
            child.join()
            sent_s = done.value
        else:
            time.sleep(args.phase)
            sent_s = args.phase
        t1 = time.monotonic()
        cpu = (time.process_time() - cpu0) / (t1 - t0)
        handled = controls.stats["messages"] - before
        rows.append((rate, fps(t0, t1), handled / (t1 - t0), sent_s, cpu))

    # No-OSC phases between all flood phases: on a shared machine the frame rate drifts with
    # other work, so each flood phase is compared with the no-OSC phases right before and after it.
    phase(0)
    for _ in range(args.repeats):
        for rate in rates:
            phase(rate)
            phase(0)
    stop()
    thread.join(30)
    refs = [r[1] for r in rows if r[0] == 0]
    print(f"no-OSC phases: {', '.join(f'{f:.0f}' for f in refs)} fps")
    print("offered msg/s | fps (phases) | fps / neighbouring no-OSC (median) | handled msg/s | "
          "handled / offered | engine CPU per handled message")
    for rate in rates:
        idx = [i for i, r in enumerate(rows) if r[0] == rate]
        ratios = [rows[i][1] / ((rows[i - 1][1] + rows[i + 1][1]) / 2) for i in idx]
        fpss = [rows[i][1] for i in idx]
        handled = float(np.median([rows[i][2] for i in idx]))
        # the engine process's extra CPU (all its threads) over its neighbouring no-OSC phases,
        # per message handled: what OSC costs the engine, whatever else the machine runs
        extra = [(rows[i][4] - (rows[i - 1][4] + rows[i + 1][4]) / 2) / max(1.0, rows[i][2]) for i in idx]
        print(f"{rate:13d} | {' '.join(f'{f:.0f}' for f in fpss):>12} | {float(np.median(ratios)):.3f} "
              f"({' '.join(f'{r:.2f}' for r in ratios)}) | {handled:13.0f} | {handled / rate:.3f} | "
              f"{float(np.median(extra)) * 1e6:.0f} us")
    bad = {k: v for k, v in controls.stats.items() if k in ("bad_packets", "bad_values", "unknown_addresses")}
    print(f"counters: {bad}")


if __name__ == "__main__":
    main()
