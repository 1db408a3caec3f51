"""OSC under load: a flood of messages at a running OscServer while a thread snapshots at 60 Hz.

    .venv/bin/python benchmarks/osc_load.py [--rate 10000] [--seconds 3] [--bad 0.01] [--pattern]

A separate process (its own GIL, like a real controller) sends ``rate`` messages per second for
``seconds`` (a bounded count) to 127.0.0.1 only: ``/lj/param/p<k>`` (or the pattern
``/lj/param/p{k,...}`` with --pattern) carrying its sequence number, plus a fraction ``bad`` of
garbage datagrams. Meanwhile a thread takes a :meth:`Controls.snapshot` at 60 Hz.

Printed: messages handled per second and the ratio to the offered rate (the rest were dropped by
the kernel's socket buffer), bad packets counted vs sent, the cost of one snapshot (the lock the
frame loop takes), and the control-to-snapshot latency: for each snapshot, how long ago the newest
value it holds was sent (includes the wait for the next 60 Hz snapshot, 0-16.7 ms).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import threading
import time

import numpy as np
from pythonosc.osc_message_builder import OscMessageBuilder

from engine.control import Controls, OscServer

N_PARAMS = 16


def _encode(address: str, value: float) -> bytes:
    b = OscMessageBuilder(address)
    b.add_arg(float(value))
    return b.build().dgram


def _flood(port: int, rate: int, count: int, bad: float, pattern: bool, sent_at, start_evt) -> None:
    """Child process: send ``count`` datagrams at ``rate``/s, recording each send time (monotonic)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", port)
    bad_every = int(round(1 / bad)) if bad > 0 else 0
    start_evt.wait()
    t0 = time.monotonic()
    batch = max(1, rate // 1000)  # one batch per millisecond
    for i in range(count):
        if bad_every and i % bad_every == bad_every - 1:
            data = b"\x01not osc at all"
        elif pattern:
            data = _encode(f"/lj/param/p{{{i % N_PARAMS},{(i + 1) % N_PARAMS}}}", i)
        else:
            data = _encode(f"/lj/param/p{i % N_PARAMS}", i)
        if i % batch == 0:
            due = t0 + i / rate
            while True:
                now = time.monotonic()
                if now >= due:
                    break
                time.sleep(min(0.0005, due - now))
        sent_at[i] = time.monotonic()
        try:
            sock.sendto(data, target)
        except OSError:
            sent_at[i] = -1.0
    sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=10000, help="messages per second offered")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--bad", type=float, default=0.01, help="fraction of garbage datagrams")
    ap.add_argument("--pattern", action="store_true", help="send address patterns instead of literals")
    args = ap.parse_args()
    count = int(args.rate * args.seconds)

    controls = Controls(smoothing=0)
    for k in range(N_PARAMS):
        controls.declare_param(f"p{k}", -1.0, -1.0, float(count))
    server = OscServer(controls, host="127.0.0.1", port=0)
    server.start()
    sent_at = mp.Array("d", count, lock=False)
    start_evt = mp.Event()
    child = mp.Process(target=_flood, args=(server.port, args.rate, count, args.bad, args.pattern,
                                            sent_at, start_evt))
    child.start()

    snap_cost, ages = [], []
    done = threading.Event()

    def snapshotter() -> None:
        period = 1 / 60
        next_t = time.monotonic()
        while not done.is_set():
            t = time.monotonic()
            snap = controls.snapshot()
            snap_cost.append(time.monotonic() - t)
            newest = int(max(snap.params.values()))
            if newest >= 0 and sent_at[newest] > 0:
                ages.append(t - sent_at[newest])
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))

    thread = threading.Thread(target=snapshotter, daemon=True)
    thread.start()
    before = controls.stats
    start_evt.set()
    t0 = time.monotonic()
    child.join()
    sent_s = time.monotonic() - t0
    time.sleep(0.2)  # let the server drain its socket
    done.set()
    thread.join()
    server.stop()
    stats = controls.stats

    bad_sent = count // int(round(1 / args.bad)) if args.bad > 0 else 0
    good_sent = count - bad_sent
    handled = stats["messages"] - before["messages"]
    bad_counted = stats["bad_packets"] - before["bad_packets"]
    offered_rate = count / sent_s
    print(f"offered: {count} datagrams in {sent_s:.2f} s = {offered_rate:.0f}/s "
          f"(asked {args.rate}/s; {good_sent} good, {bad_sent} garbage; "
          f"{'patterns' if args.pattern else 'literal addresses'})")
    print(f"handled: {handled} messages = {handled / sent_s:.0f}/s, ratio to offered good "
          f"{handled / good_sent:.3f} (the rest dropped by the kernel socket buffer)")
    print(f"bad packets counted: {bad_counted} of {bad_sent} sent (ratio "
          f"{(bad_counted / bad_sent) if bad_sent else float('nan'):.3f}); bad_values {stats['bad_values']}")
    cost = np.asarray(snap_cost) * 1e6
    age = np.asarray(ages) * 1e3
    print(f"snapshot() cost: p50 {np.percentile(cost, 50):.1f} us, p99 {np.percentile(cost, 99):.1f} us, "
          f"max {cost.max():.1f} us over {len(cost)} snapshots")
    if len(age):
        print(f"control-to-snapshot age of the newest value: p50 {np.percentile(age, 50):.1f} ms, "
              f"p99 {np.percentile(age, 99):.1f} ms, max {age.max():.1f} ms")


if __name__ == "__main__":
    main()
