"""Property-based attacks on every parser the engine owns (issue 17), with hypothesis.

What is generated, and what must hold for every example:

- **OSC datagrams** (random bytes; structured messages and nested, time-tagged bundles with
  pattern addresses) fed to a real ``OscServer.handle_datagram`` and to the wire checks: nothing
  raises, and each datagram is handled in bounded time.
- **OSC address patterns** against random addresses: ``engine.control.pattern.match`` agrees with
  the small recursive reference matcher written here from the OSC 1.0 rules, and raises nothing but
  ``PatternError``. Matching time is checked separately, in a child process that is killed if it
  hangs (a backtracking matcher holds the GIL, so no in-process timeout could stop it).
- **TOML mapping text** (fragments of real mappings, junk, deep nesting) through
  ``parse_mapping``: only ``MappingError`` escapes.
- **ISF shader headers** (random JSON, deep nesting, junk) through ``parse_isf``: only
  ``ShaderError`` (an ``LJError``) escapes.
- **Pickles** (random bytes behind a pickle header; mutations of a real NVlabs-shaped pickle)
  through the restricted reader ``read_pickle`` with a memory limit: only ``GeneratorError``
  (``ModelError``) escapes.

CI runs ``LJ_FUZZ_EXAMPLES`` examples per property (default 200; the module takes well under a
minute). For a long run by hand::

    LJ_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_properties.py
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.control.osc import OscServer
from engine.control.pattern import PatternError, match
from engine.control.state import Controls
from engine.control.wire import check_packet, flatten, parse_simple
from engine.errors import GeneratorError, LJError, MappingError, ShaderError
from engine.generators.nvlabs_pickle import read_pickle
from engine.mapping.spec import parse_mapping
from engine.render.isf import parse_isf

EXAMPLES = int(os.environ.get("LJ_FUZZ_EXAMPLES", "200"))
settings.register_profile("lj", max_examples=EXAMPLES, deadline=None, derandomize=False,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                 HealthCheck.function_scoped_fixture])
settings.load_profile("lj")
pytestmark = pytest.mark.timeout(300)

#: One input may take this long: generous for a loaded machine, far below a hang.
PER_EXAMPLE_S = 5.0

# -- OSC ----------------------------------------------------------------------------------------


def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (4 - len(b) % 4)


def osc_string(s: str) -> bytes:
    return _pad(s.encode("utf-8", "surrogatepass"))


def osc_message(address: str, args: list) -> bytes:
    """OSC encoding written here (not the engine's encoder): f, i, s, T, F, d, h, b tags."""
    import struct

    tags, data = ",", b""
    for a in args:
        if isinstance(a, bool):
            tags += "T" if a else "F"
        elif isinstance(a, int):
            tags += "i"
            data += struct.pack(">i", a)
        elif isinstance(a, float):
            tags += "f"
            data += struct.pack(">f", a)
        elif isinstance(a, str):
            tags += "s"
            data += osc_string(a)
        else:
            tags += "b"
            data += struct.pack(">i", len(a)) + _pad(a) if len(a) % 4 else struct.pack(">i", len(a)) + a
    return osc_string(address) + osc_string(tags) + data


def osc_bundle(tag: int, elements: list[bytes]) -> bytes:
    import struct

    return b"#bundle\x00" + struct.pack(">Q", tag) + b"".join(
        struct.pack(">i", len(e)) + e for e in elements)


SEGMENT = st.text(alphabet="abcxyzZ_0123?-!,[]{}", min_size=0, max_size=8)
#: Addresses with OSC pattern characters but at most a few '*' (many '*' is the backtracking
#: case: tested for time in a child process below, where a hang cannot stop the suite).
ADDRESS = st.builds(
    lambda head, segs, stars: head + "/".join(s.replace("*", "") for s in segs)
    + "".join("*" for _ in range(stars)),
    st.sampled_from(["/lj/param/", "/lj/trigger/", "/lj/", "/lj/state/", "/lj/fx/", "/", "/x/", ""]),
    st.lists(SEGMENT, max_size=4), st.integers(0, 3))
ARG = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-2**31, 2**31 - 1),
                st.booleans(), st.text(max_size=40), st.binary(max_size=16))
MESSAGE = st.builds(osc_message, ADDRESS, st.lists(ARG, max_size=4))
TIMETAG = st.one_of(st.just(1), st.integers(0, 2**64 - 1),
                    st.builds(lambda d: int((time.time() + 2208988800 + d) * 2**32), st.floats(-10, 5)))
PACKET = st.recursive(MESSAGE, lambda inner: st.builds(osc_bundle, TIMETAG, st.lists(inner, max_size=5)),
                      max_leaves=20)


def _server() -> OscServer:
    controls = Controls()
    controls.declare_param("speed", 0.5, 0.0, 1.0)
    controls.declare_param("glow", 0.5, 0.0, 1.0)
    return OscServer(controls, port=0)  # never started: handle_datagram is what the thread calls


SERVER = _server()


def _handled_in_time(dgram: bytes) -> None:
    t = time.monotonic()
    SERVER.handle_datagram(dgram, ("127.0.0.1", 9))  # replies go to the discard port (not sent: no socket)
    SERVER.run_due(now=time.monotonic() + 1e9)        # and everything it scheduled, now
    assert time.monotonic() - t < PER_EXAMPLE_S


@given(st.binary(max_size=512))
def test_random_bytes_never_break_the_osc_server(data):
    assert check_packet(data) is None or isinstance(check_packet(data), str)
    parse_simple(data)
    _handled_in_time(data)
    _handled_in_time(b"#bundle\x00" + data)
    _handled_in_time(b"/lj/param/speed\x00" + data)


@given(PACKET)
def test_structured_osc_packets_never_break_the_osc_server(dgram):
    why = check_packet(dgram)
    if why is None and len(dgram) < 65000:
        flatten(dgram)  # a packet the checks pass must parse
    _handled_in_time(dgram)


@given(PACKET, st.integers(0, 64), st.binary(min_size=1, max_size=4))
def test_truncated_or_corrupted_packets_never_break_the_osc_server(dgram, at, junk):
    _handled_in_time(dgram[:at])
    cut = min(at, len(dgram))
    _handled_in_time(dgram[:cut] + junk + dgram[cut + len(junk):])


# -- OSC patterns -------------------------------------------------------------------------------


def _ref_char_class(body: str, ch: str) -> bool:
    negate = body.startswith("!")
    if negate:
        body = body[1:]
    hit = False
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            lo, hi = body[k], body[k + 2]
            hit = hit or lo <= ch <= hi
            k += 3
        else:
            hit = hit or body[k] == ch
            k += 1
    return hit != negate


def ref_match(pattern: str, address: str) -> bool:
    """OSC 1.0 matching of one address, recursively and obviously (exponential; small inputs only).

    ``?`` one character but ``/``; ``*`` any run without ``/``; ``[abc]``, ``[a-z]``, ``[!...]``
    one character in (or not in) the set, never ``/``; ``{a,b}`` one of the words.
    """
    if not pattern:
        return not address
    c = pattern[0]
    if c == "*":
        return any(ref_match(pattern[1:], address[i:])
                   for i in range(len(address) + 1) if "/" not in address[:i])
    if c == "?":
        return bool(address) and address[0] != "/" and ref_match(pattern[1:], address[1:])
    if c == "[":
        end = pattern.index("]", 1)
        return (bool(address) and address[0] != "/" and _ref_char_class(pattern[1:end], address[0])
                and ref_match(pattern[end + 1:], address[1:]))
    if c == "{":
        end = pattern.index("}", 1)
        return any(address.startswith(w) and ref_match(pattern[end + 1:], address[len(w):])
                   for w in pattern[1:end].split(","))
    return bool(address) and address[0] == c and ref_match(pattern[1:], address[1:])


def _well_formed(pattern: str) -> bool:
    """Patterns the reference defines: brackets closed, non-empty, no '/' or nesting inside."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "]}":
            return False
        if c in "[{":
            close = "]" if c == "[" else "}"
            end = pattern.find(close, i + 1)
            if end < 0:
                return False
            body = pattern[i + 1:end]
            if "/" in body or any(x in body for x in "[]{}*?") or (c == "[" and body in ("", "!")):
                return False
            if c == "[":
                b = body[1:] if body.startswith("!") else body
                if any(b[k + 1] == "-" and b[k] > b[k + 2] for k in range(len(b) - 2)):
                    return False  # a reversed range
            i = end + 1
        else:
            i += 1
    return pattern.startswith("/")


PATTERN_TEXT = st.text(alphabet="/ab-!*?[]{},", min_size=1, max_size=12).map(lambda s: "/" + s)
ADDRESS_TEXT = st.text(alphabet="/ab-!,", max_size=10).map(lambda s: "/" + s)


@given(PATTERN_TEXT, st.lists(ADDRESS_TEXT, min_size=1, max_size=6))
def test_pattern_match_agrees_with_the_reference(pattern, addresses):
    pattern = pattern[:1] + pattern[1:].replace("**", "*")  # keep the reference cheap
    try:
        got = match(pattern, addresses)
    except PatternError:
        assert not _well_formed(pattern) or len(pattern) > 256, f"{pattern!r} is a valid pattern"
        return
    if _well_formed(pattern):
        assert got == [a for a in addresses if ref_match(pattern, a)], pattern


@given(st.text(max_size=300), st.lists(st.text(max_size=40), max_size=4))
def test_pattern_match_raises_only_pattern_error(pattern, addresses):
    if pattern.count("*") > 4:  # backtracking: the child-process test below
        pattern = pattern.replace("*", "")
    try:
        match(pattern, addresses)
    except PatternError:
        pass


MATCH_TIME_SCRIPT = textwrap.dedent("""
    import time
    from engine.control.pattern import PatternError, match
    space = ["/lj/param/" + n for n in ("speed", "glow", "trails", "kick", "drift")] + [
             "/lj/state/" + n for n in ("mapping", "fps", "error", "frames", "uptime")]
    for stars in (8, 16, 32, 64, 120, 250):
        for tail in ("Z", "a?Z", "[!s]Z", "{x,y}Z"):
            for head in ("/lj/param/", "/lj/state/", "/lj/*/", "/"):
                pattern = head + "*" * stars + tail
                t = time.perf_counter()
                try:
                    match(pattern, space)
                except PatternError:
                    pass
                print(pattern[:40], round(time.perf_counter() - t, 4), flush=True)
    print("done", flush=True)
""")


def test_pattern_matching_time_is_bounded_whatever_the_pattern():
    """'*' x N + 'Z' against a show's address space, in a child process killed after 30 s.

    Linear matching does all 96 patterns in milliseconds; a backtracking one never finishes the
    16-star case."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run([sys.executable, "-c", MATCH_TIME_SCRIPT], capture_output=True, text=True,
                             timeout=30, cwd=root, env=dict(os.environ, PYTHONPATH=str(root)))
    except subprocess.TimeoutExpired as exc:
        lines = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        last = lines.strip().splitlines()[-1:] or ["(none)"]
        pytest.fail(f"pattern matching did not finish within 30 s; last pattern done: {last[0]}")
    assert out.returncode == 0 and out.stdout.strip().endswith("done"), out.stderr[-500:]
    worst = max(float(line.rsplit(" ", 1)[1]) for line in out.stdout.splitlines()[:-1])
    assert worst < 1.0, f"one pattern took {worst:.2f} s"


# -- TOML mappings ------------------------------------------------------------------------------

TOML_LINES = st.sampled_from([
    "[meta]", 'name = "x"', "[params]", "speed = 0.5", "kick = { default = 1.0, min = 0.0, max = 3.0 }",
    "[latent]", "keyframes = { seeds = [1, 2, 3] }", "walk = { seconds_per_key = 2.0 }", "[shaders]",
    'chain = ["feedback"]', "[[route]]", 'from = "level"', 'to = "shader.feedback.amount"',
    'from = "0.3 + 0.5 * bass_level"', 'curve = "pow(x, 2)"', "[[scene]]", "[lfo]", "a = 1", "[clock]",
    "[cues]", "[[cue]]", 'x = """', "= =", "[", "]]", "a.b.c = 1", "x = 1e999", "y = nan", "[a.b]",
    'z = "\\u0000"', "t = 1979-05-27T07:32:00Z", "k = [[[]]]"])


@st.composite
def toml_texts(draw):
    lines = draw(st.lists(st.one_of(TOML_LINES, st.text(max_size=30)), max_size=25))
    depth = draw(st.sampled_from([0, 0, 0, 50, 1000, 100_000]))
    if depth:
        lines.insert(draw(st.integers(0, len(lines))), "deep = " + "[" * depth + "]" * depth)
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), "{ a = " * min(depth or 10, 5000) + "1" + " }" * min(depth or 10, 5000))
    return "\n".join(lines)


@given(toml_texts())
def test_mapping_text_only_ever_raises_mapping_error(text):
    t = time.monotonic()
    try:
        parse_mapping(text, "fuzz.toml")
    except MappingError:
        pass
    assert time.monotonic() - t < PER_EXAMPLE_S


# -- ISF headers --------------------------------------------------------------------------------

JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.floats(), st.integers(), st.text(max_size=10)),
                    lambda inner: st.one_of(st.lists(inner, max_size=4),
                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=15)
ISF_KEYS = st.sampled_from(["INPUTS", "PASSES", "DESCRIPTION", "CATEGORIES", "ISFVSN"])
INPUT = st.fixed_dictionaries({"NAME": st.one_of(st.text(max_size=8), st.sampled_from(["amount", "TIME", "x"])),
                               "TYPE": st.one_of(st.sampled_from(["float", "bool", "color", "point2D",
                                                                  "image", "long", "event", "audio"]), JSON)},
                              optional={"DEFAULT": JSON, "MIN": JSON, "MAX": JSON})
PASS = st.fixed_dictionaries({}, optional={"TARGET": st.text(max_size=8), "PERSISTENT": JSON, "FLOAT": JSON,
                                           "WIDTH": st.one_of(JSON, st.sampled_from(["$WIDTH", "$WIDTH*100", "$HEIGHT/2"])),
                                           "HEIGHT": st.one_of(JSON, st.sampled_from(["$HEIGHT", "$HEIGHT*1e9"]))})
HEADER = st.one_of(JSON, st.fixed_dictionaries({}, optional={"INPUTS": st.one_of(st.lists(INPUT, max_size=4), JSON),
                                                             "PASSES": st.one_of(st.lists(PASS, max_size=4), JSON),
                                                             "CATEGORIES": JSON, "DESCRIPTION": JSON}),
                   st.dictionaries(ISF_KEYS, JSON, max_size=3))


@st.composite
def isf_texts(draw):
    header = json.dumps(draw(HEADER))
    kind = draw(st.sampled_from(["plain", "deep", "junk", "cut"]))
    if kind == "deep":
        n = draw(st.sampled_from([100, 5000, 100_000]))
        header = '{"X": ' + "[" * n + "]" * n + "}"
    elif kind == "junk":
        header = draw(st.text(max_size=60))
    elif kind == "cut":
        header = header[:draw(st.integers(0, len(header)))]
    body = draw(st.sampled_from(["void main() { gl_FragColor = vec4(1.0); }",
                                 "void main() { gl_FragColor = IMG_THIS_PIXEL(inputImage); }", ""]))
    lead = draw(st.sampled_from(["/*", " /*", "", "/* /*"]))
    return f"{lead}{header}*/\n{body}"


@given(isf_texts())
def test_isf_header_only_ever_raises_shader_error(text):
    t = time.monotonic()
    try:
        parse_isf(text, "fuzz.fs")
    except ShaderError:
        pass
    assert time.monotonic() - t < PER_EXAMPLE_S


# -- pickles ------------------------------------------------------------------------------------


def _seed_pickle() -> bytes:
    """A small NVlabs-shaped network pickle (a persistent record with a tensor and init kwargs)."""
    from model_fixtures import Record, _Writer

    state = {"training": False, "_parameters": OrderedDict(w=torch.zeros(3)), "_buffers": OrderedDict(),
             "_modules": OrderedDict(), "_init_args": (), "_init_kwargs": {"z_dim": 4, "c_dim": 0,
                                                                          "mapping_kwargs": {"num_layers": 2}}}
    rec = Record("Generator", state)
    buf = io.BytesIO()
    _Writer(buf, protocol=4).dump(dict(G=rec, G_ema=rec, D=None, augment_pipe=None))
    return buf.getvalue()


SEED = _seed_pickle()
PLAIN_SEEDS = [pickle.dumps({"G_ema": [1, 2.0, "x", (3,)]}, protocol=p) for p in (2, 3, 4, 5)]


@st.composite
def pickle_bytes(draw):
    kind = draw(st.sampled_from(["random", "mutated", "mutated", "plain"]))
    if kind == "random":
        return b"\x80" + draw(st.sampled_from([b"\x02", b"\x04", b"\x05"])) + draw(st.binary(max_size=300))
    data = bytearray(SEED if kind == "mutated" else draw(st.sampled_from(PLAIN_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "cut"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:
            del data[max(2, at):]
        if len(data) < 3:
            break
    return bytes(data)


@given(pickle_bytes())
def test_restricted_pickle_reader_only_ever_raises_generator_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("pkl") / "model.pkl"
    path.write_bytes(data)
    t = time.monotonic()
    try:
        read_pickle(path, memory_limit=64 * 1024 ** 2)
    except GeneratorError:
        pass
    assert time.monotonic() - t < PER_EXAMPLE_S


def test_the_seeds_are_what_the_reader_accepts(tmp_path):
    """The mutated pickles start from one the reader reads (so mutations test real parsing)."""
    path = tmp_path / "model.pkl"
    path.write_bytes(SEED)
    records = read_pickle(path)
    assert "G_ema" in records
    assert issubclass(GeneratorError, LJError) and issubclass(ShaderError, LJError)
