"""The real engine against an adversary on 127.0.0.1 (issue 17): every attack class, one show.

One ``lj run --headless`` (64 px, the built-in generator, OSC in/out, OSCQuery, ``/health``) runs
for the whole module in a temporary show folder (a mapping, ``presets/``, ``stills/``,
``recordings/``, its own ``shaders/`` as ``$LJ_HOME``), with a sentinel folder beside it. Each
test sends one attack over real UDP/TCP or writes one hostile file into the show folder, then
asserts what a show that runs for weeks needs (see ``adversary_support.run_attack``):

- the process is alive and frames keep coming (the engine's per-frame OSC out, stamped here);
- ``GET /health`` answers within a bound and its frame count grows;
- resident memory stays under 1.5 GB and grows by less than 400 MB (a watchdog kills the engine
  at 2 GB, so a memory attack cannot take the machine down);
- no file outside the show folder changed (sizes, mtimes and hashes of everything beside it).

An attack that hangs or kills the engine fails its test and the engine is killed (process
group) and started afresh for the next test, so the tests do not depend on each other's outcome.
The longest frame gap each attack caused is printed at the end (``-s`` to see it);
``benchmarks/attack.py`` prints the same as a table.
"""

from __future__ import annotations

import pytest

from adversary_support import (ATTACKS, Engine, Result, ShowFolder, run_attack,
                               startup_with_nested_bindings)

pytestmark = pytest.mark.timeout(180)

RESULTS: list[Result] = []


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    folder = ShowFolder(tmp_path_factory.mktemp("adversary")).make()
    eng = Engine(folder)
    try:
        yield eng
    finally:
        eng.stop()
        for r in RESULTS:
            print(f"{r.name:45s} {'survived' if r.survived else 'FAILED':9s} "
                  f"longest frame gap {r.gap_s * 1e3:9.1f} ms = {r.gap_ratio:8.1f} x median")


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_show_survives(engine, name):
    result = run_attack(engine, name, ATTACKS[name])
    RESULTS.append(result)
    assert result.problems == [], f"{name}: " + "; ".join(result.problems)


def test_a_nested_bindings_file_does_not_stop_start_up(tmp_path):
    problems = startup_with_nested_bindings(tmp_path)
    assert problems == [], "; ".join(problems)
