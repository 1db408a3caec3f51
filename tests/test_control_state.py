"""Controls: the thread-safe store that outside input writes to and the frame loop snapshots."""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest

from engine.control.state import (MAX_PARAMS, MAX_PENDING_TRIGGERS, MAX_UNDECLARED, ControlSnapshot,
                                  Controls)


def test_set_param_shows_in_snapshot_as_float():
    c = Controls(smoothing=0)
    assert c.set_param("speed", 0.25)
    assert c.set_param("count", 3)
    assert c.set_param("np", np.float32(1.5))
    assert c.set_param("flag", True)
    snap = c.snapshot()
    assert snap.params == {"speed": 0.25, "count": 3.0, "np": 1.5, "flag": 1.0}
    assert all(type(v) is float for v in snap.params.values())
    # latest value wins, and params persist across snapshots (they are not drained)
    c.set_param("speed", 0.75)
    assert c.snapshot().params["speed"] == 0.75
    assert c.snapshot().params["speed"] == 0.75


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "1.0", None, [1.0], 1e400 * 0, np.float64("nan")])
def test_bad_values_are_rejected_and_counted(value):
    c = Controls()
    c.set_param("speed", 0.5)
    assert c.set_param("speed", value) is False
    assert c.snapshot().params == {"speed": 0.5}
    assert c.stats["bad_values"] == 1


@pytest.mark.parametrize("name", ["", None, 3, "x" * 500, "bad\nname"])
def test_bad_names_are_rejected(name):
    c = Controls()
    assert c.set_param(name, 1.0) is False
    assert c.trigger(name) is False
    assert c.snapshot() == ControlSnapshot(params={}, triggers=[], mapping=None)
    assert c.stats["bad_values"] == 2


def test_snapshot_is_frozen_and_a_copy():
    c = Controls()
    c.set_param("a", 1.0)
    snap = c.snapshot()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.mapping = "x"  # type: ignore[misc]
    snap.params["a"] = 99.0
    assert c.snapshot().params == {"a": 1.0}


def test_triggers_are_queued_in_order_and_drained_once():
    c = Controls()
    c.trigger("flash")
    c.trigger("cut")
    c.trigger("flash")
    assert c.snapshot().triggers == ["flash", "cut", "flash"]
    assert c.snapshot().triggers == []


def test_trigger_queue_is_bounded_and_drops_oldest():
    c = Controls()
    for i in range(MAX_PENDING_TRIGGERS + 10):
        c.trigger(f"t{i}")
    triggers = c.snapshot().triggers
    assert len(triggers) == MAX_PENDING_TRIGGERS
    assert triggers[-1] == f"t{MAX_PENDING_TRIGGERS + 9}"
    assert triggers[0] == "t10"
    assert c.stats["dropped_triggers"] == 10


def test_param_names_are_bounded():
    """Undeclared names live in their own small table: the least recently set goes first."""
    c = Controls()
    for i in range(MAX_UNDECLARED):
        assert c.set_param(f"p{i}", 1.0)
    assert c.set_param("p0", 2.0)  # existing names still update (and p0 is now the most recent)
    assert c.set_param("one_more", 1.0)  # accepted: the least recently set (p1) is forgotten
    names = c.param_names()
    assert len(names) == MAX_UNDECLARED and "p1" not in names and {"p0", "one_more"} <= set(names)
    assert c.stats["dropped_params"] == 1


def test_unknown_names_never_block_or_evict_declared_ones():
    c = Controls()
    for i in range(MAX_PARAMS):
        assert c.declare_param(f"d{i}", 0.5)
    for i in range(MAX_PARAMS + 100):  # a flood of unknown names
        c.set_param(f"junk{i}", 1.0)
    assert not c.declare_param("one_too_many", 0.5)  # declared ones have their own bound
    assert all(c.value(f"/lj/param/d{i}") == 0.5 for i in range(MAX_PARAMS))
    assert len(c.param_names()) == MAX_PARAMS + MAX_UNDECLARED
    # a declared name that was first set undeclared moves to the declared table
    c2 = Controls()
    c2.set_param("late", 0.25)
    for i in range(MAX_UNDECLARED + 5):
        c2.set_param(f"junk{i}", 1.0)
    assert c2.declare_param("speed", 0.5) and c2.set_param("speed", 0.75)
    assert c2.value("/lj/param/speed") == 0.75


def test_mapping_request_latest_wins_and_is_drained():
    c = Controls()
    assert c.snapshot().mapping is None
    c.request_mapping("maps/a.toml")
    c.request_mapping("maps/b.toml")
    assert c.snapshot().mapping == "maps/b.toml"
    assert c.snapshot().mapping is None
    assert c.request_mapping("") is False
    assert c.request_mapping("bad\0path") is False
    assert c.snapshot().mapping is None
    assert c.stats["bad_values"] == 2


def test_stats_is_a_copy_with_the_documented_counters():
    c = Controls()
    stats = c.stats
    for key in ("messages", "bad_packets", "bad_values", "unknown_addresses"):
        assert stats[key] == 0
    stats["messages"] = 42
    c.count("messages", 2)
    assert c.stats["messages"] == 2


def test_concurrent_writers_lose_nothing():
    c = Controls(smoothing=0)
    per_thread, n_threads = 50, 4
    got: list[str] = []
    done = threading.Event()

    def writer(k: int) -> None:
        for i in range(per_thread):
            c.trigger(f"w{k}")
            c.set_param(f"w{k}", float(i))

    def reader() -> None:
        while not done.is_set():
            got.extend(c.snapshot().triggers)

    r = threading.Thread(target=reader)
    r.start()
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    done.set()
    r.join()
    final = c.snapshot()
    got.extend(final.triggers)
    assert len(got) == per_thread * n_threads
    assert final.params == {f"w{k}": float(per_thread - 1) for k in range(n_threads)}
