"""Pickles that expand (issue 17, item 8): a few hundred bytes of opcodes that would make
gigabytes through shared references, self-reference, deep nesting, huge integers, memo floods
or constructors fed the same big list again and again. Each is written here opcode by opcode
(protocol 2) and read in a child process whose address space is capped, so a regression costs
that child a MemoryError, never the machine; the reader must refuse it with a one-line
ModelError naming the file, fast and without growing."""

from __future__ import annotations

import json
import os
import pickletools
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# -- opcodes (protocol 2) ---------------------------------------------------------------------
PROTO2 = b"\x80\x02"
STOP = b"."
MARK = b"("
EMPTY_LIST, EMPTY_DICT, APPENDS, SETITEMS, POP = b"]", b"}", b"e", b"u", b"0"
TUPLE1, REDUCE = b"\x85", b"R"
PERSISTENCE = b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n"


def s(text: str) -> bytes:
    """BINUNICODE."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def put(i):
    return b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)   # (LONG_)BINPUT


def get(i):
    return b"h" + bytes([i]) if i < 256 else b"j" + struct.pack("<I", i)   # (LONG_)BINGET


def record(kwargs_ops: bytes, prefix: bytes = b"") -> bytes:
    """A persistent record (``G_ema`` by default) whose state's ``_init_kwargs`` the ops push."""
    meta = (EMPTY_DICT + MARK + s("type") + s("class") + s("version") + b"K\x06"
            + s("class_name") + s("Generator") + s("module_src") + s("")
            + s("state") + EMPTY_DICT + MARK + s("_init_kwargs") + kwargs_ops + SETITEMS
            + SETITEMS)
    return PROTO2 + prefix + PERSISTENCE + meta + TUPLE1 + REDUCE + STOP


def laughs(levels=30, fan=10) -> bytes:
    """{"mapping_kwargs": l_levels} where l_k = [l_{k-1}] * fan: fan**levels lists expanded."""
    ops = EMPTY_LIST + put(0)
    for k in range(1, levels + 1):
        ops += POP + EMPTY_LIST + MARK + get(k - 1) * fan + APPENDS + put(k)
    return EMPTY_DICT + MARK + s("mapping_kwargs") + ops + SETITEMS


def self_reference() -> bytes:
    return EMPTY_DICT + MARK + s("mapping_kwargs") + EMPTY_LIST + put(0) + MARK + get(0) + APPENDS + SETITEMS


def deep(n=100_000) -> bytes:
    return EMPTY_DICT + MARK + s("x") + EMPTY_LIST * n + b"a" * (n - 1) + SETITEMS


def constructor_flood(n_items=50_000, calls=2000) -> bytes:
    """OrderedDict(big) called ``calls`` times on the one memoised list of pairs."""
    pairs = EMPTY_LIST + put(0) + MARK + b"".join(
        b"J" + struct.pack("<i", k) + b"K\x00" + b"\x86" for k in range(n_items)) + APPENDS
    od = b"ccollections\nOrderedDict\n" + put(1)
    ops = pairs + POP + od + POP + EMPTY_LIST + MARK
    ops += (get(1) + get(0) + TUPLE1 + REDUCE) * calls
    ops += APPENDS
    return EMPTY_DICT + MARK + s("x") + ops + SETITEMS


ATTACKS = {
    "laughs": (lambda: record(laughs()), "expands to more than"),
    "self_reference": (lambda: record(self_reference()), "contains itself"),
    "deep": (lambda: record(deep()), "levels deep"),
    "long4": (lambda: record(EMPTY_DICT + MARK + s("z_dim") + b"\x8b" + struct.pack("<i", 4 << 20)
                             + b"\x01" * (4 << 20) + SETITEMS), "bits"),
    "memo_flood": (lambda: record(EMPTY_DICT + put(0x7FFFFFFF)), "memo slot"),
    "memo_flood_binput": (lambda: record(EMPTY_DICT + b"q\xff"), "memo slot"),
    "bytes8_claims_a_petabyte": (lambda: record(EMPTY_DICT + MARK + s("x") + b"\x8e"
                                                + struct.pack("<Q", 1 << 50) + b"ab" + SETITEMS),
                                 "truncated"),
    "constructor_flood": (lambda: record(constructor_flood()), "elements"),
}

CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from engine.generators.nvlabs_pickle import ModelError, PersistentRecord, read_pickle
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), vm + (1 << 30)))   # 1 GiB headroom
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = {}
    try:
        recs = read_pickle(sys.argv[1])
        rec = recs.get("G_ema")
        if isinstance(rec, PersistentRecord):
            json.dumps(rec.init_kwargs)   # what lj export writes
        out["error"] = None
    except ModelError as exc:
        out["error"] = str(exc)
    except BaseException as exc:
        out["error"] = None
        out["crash"] = type(exc).__name__
    out["seconds"] = time.perf_counter() - t0
    out["grew_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps(out))
""")


def attempt(path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_expanding_pickles_are_refused_fast_and_small(tmp_path, name):
    build, needle = ATTACKS[name]
    data = build()
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(data)
    out = attempt(path)
    assert out.get("crash") is None, out
    assert out["error"] is not None, f"{name}: read without complaint ({out})"
    assert "\n" not in out["error"] and out["error"].startswith(str(path)), out
    assert needle in out["error"], out
    assert out["seconds"] < 30, out          # refused by a linear scan; the bug ran out of memory
    assert out["grew_kb"] < 300_000 + 4 * len(data) // 1024, out   # the bug: gigabytes


def test_the_billion_laughs_file_is_small():
    data = record(laughs())
    assert len(data) < 1000   # the 857 bytes, give or take
    ops = [op.name for op, _arg, _pos in pickletools.genops(data)]
    assert ops[0] == "PROTO" and ops[-1] == "STOP" and ops.count("BINGET") == 300


def test_lj_export_of_a_real_model_with_shared_kwargs_is_one_line(tmp_path):
    """A real generator pickle (the Python pickler memoises the shared lists, so the file stays
    small) whose init kwargs expand to 10**30 lists: lj export answers with one line, fast."""
    from model_fixtures import Record, _Writer, module_state
    import io

    from engine.generators.stylegan2 import Generator

    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                  mapping_kwargs={"num_layers": 1}, synthesis_kwargs={"channel_base": 64, "channel_max": 8})
    net = Generator(**kwargs)
    shared = []
    for _ in range(30):
        shared = [shared] * 10
    state = module_state(net, dict(kwargs, extra=shared))
    buf = io.BytesIO()
    _Writer(buf, protocol=3).dump({"G_ema": Record("Generator", state)})
    path = tmp_path / "laughs.pkl"
    path.write_bytes(buf.getvalue())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DISPLAY", None)
    cap = ("import resource, runpy, sys; vm = int(open('/proc/self/status').read()"
           ".split('VmSize:')[1].split()[0]) * 1024; "
           "resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), vm + (3 << 30))); "
           "sys.argv = ['lj'] + sys.argv[1:]; runpy.run_module('engine', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", cap, "export", str(path), "-o", str(tmp_path / "x.ts")],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("lj: error:")]
    assert len(lines) == 1 and str(path) in lines[0] and "refused" in lines[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr
