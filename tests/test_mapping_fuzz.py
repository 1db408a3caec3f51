"""Fuzzing the mapping parser and compiler: every input is either a valid mapping that runs, or a
one-line MappingError naming the file (and the line when there is one). Nothing else escapes.

The amount of work is bounded by a fixed number of cases from a fixed seed (no timers)."""

import re
from pathlib import Path

import numpy as np
import pytest

from engine.errors import MappingError
from engine.mapping import compile_mapping, parse_mapping
from tests.test_mapping_compile import HOP, SPACE, SR

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [p.read_text() for p in sorted((ROOT / "mappings").glob("*.toml"))]
ERROR = re.compile(r"fuzz\.toml(:\d+)?: \S")

WORDS = ['"', "'", "[", "]", "{", "}", "=", ",", "\n", "#", "nan", "inf", "-inf", "1e999", "0",
         "-1", "true", "[[route]]", "[latent]", "[lfo]", "[clock]", "bpm = 0", "x.y = 1",
         '"lfo.a"', '"param.q"', '"chroma"', '"onset_low * (1 +"', "'''", '"""', "\\u0000",
         "9" * 40, "gate = ", "hold = ", "integrate = true", "key = 99", "layers = [5, 1]",
         'keyframes = ["../../etc/passwd.npy"]', 'keyframes = [1, "x.npy"]',
         "[[scene]]", "[[scene.route]]", "[scene.latent]", "[scenes]", "[[cue]]", "[cues]",
         "[bindings]", 'mode = "overwrite"', 'mode = "average"', 'mode = "add"', "switch_on = ",
         '"downbeat"', "crossfade = ", "{ beats = 4 }", "next = ", 'name = "a"', "at = ",
         "scene = ", "loop = ", 'layers = "fine"', '"generator.blend"',
         'keyframes = { latents = ["../x"] }']


def check(text):
    """Parse, compile and run ``text``; return "ok" or "error" (anything else fails)."""
    try:
        spec = parse_mapping(text, "fuzz.toml")
        m = compile_mapping(spec, SPACE, SR, HOP)
    except MappingError as e:
        msg = str(e)
        assert "\n" not in msg, msg
        assert ERROR.match(msg), msg
        return "error"
    for i in range(4):
        m.step_hop({"onset": float(i % 2), "rms": 0.5, "chroma": np.ones(12, np.float32),
                    "downbeat": float(i % 2)}, {p: 0.5 for p in m.params})
        if hasattr(m, "switch") and i == 1:
            assert m.switch("next")
        p = m.frame(m.time)
        assert p.w_plus.shape == (SPACE.num_layers, SPACE.w_dim)
        assert np.all(np.isfinite(p.w_plus)) and np.all(np.isfinite(p.noise))
    return "ok"


def mutate(rng, text):
    lines = text.split("\n")
    for _ in range(int(rng.integers(1, 4))):
        op = int(rng.integers(0, 6))
        i = int(rng.integers(0, len(lines)))
        if op == 0:                                    # delete a line
            del lines[i]
            if not lines:
                lines = [""]
        elif op == 1:                                  # duplicate a line
            lines.insert(i, lines[i])
        elif op == 2:                                  # insert a random token
            s = lines[i]
            j = int(rng.integers(0, len(s) + 1))
            lines[i] = s[:j] + str(rng.choice(WORDS)) + s[j:]
        elif op == 3:                                  # delete a span of characters
            s = lines[i]
            j = int(rng.integers(0, len(s) + 1))
            lines[i] = s[:j] + s[j + int(rng.integers(1, 6)):]
        elif op == 4:                                  # replace a number
            lines[i] = re.sub(r"\d+(\.\d+)?", str(rng.choice(["nan", "inf", "-3", "1e300", "0",
                                                               '"x"', "[]", "{}"])),
                              lines[i], count=1)
        else:                                          # swap two lines
            k = int(rng.integers(0, len(lines)))
            lines[i], lines[k] = lines[k], lines[i]
    return "\n".join(lines)


def test_mutated_shipped_files():
    rng = np.random.default_rng(1234)
    seen = {"ok": 0, "error": 0}
    for n in range(400):
        text = SHIPPED[n % len(SHIPPED)]
        seen[check(mutate(rng, text))] += 1
    assert seen["ok"] > 20 and seen["error"] > 100      # both paths were exercised


def test_mutated_scene_files():
    from tests.test_mapping_scenes import SCENES

    rng = np.random.default_rng(4321)
    seen = {"ok": 0, "error": 0}
    assert check(SCENES) == "ok"
    for _ in range(300):
        seen[check(mutate(rng, SCENES))] += 1
    assert seen["ok"] > 20 and seen["error"] > 50


def test_mutated_cue_files():
    from engine.cues import CueTimer, parse_cue_file
    from tests.test_mapping_show import CUES

    rng = np.random.default_rng(77)
    seen = {"ok": 0, "error": 0}
    for _ in range(300):
        text = mutate(rng, CUES)
        try:
            spec = parse_cue_file(text, "fuzz.toml")
        except MappingError as e:
            assert "\n" not in str(e) and ERROR.match(str(e)), str(e)
            seen["error"] += 1
            continue
        seen["ok"] += 1
        t = CueTimer(spec)
        t.start(0.0)
        for k in range(20):
            t.due(k * 0.7)
    assert seen["ok"] > 20 and seen["error"] > 50


def test_random_token_soup():
    rng = np.random.default_rng(99)
    for _ in range(300):
        text = " ".join(str(rng.choice(WORDS)) for _ in range(int(rng.integers(1, 30))))
        check(text)


HOSTILE = [
    "[meta]\nname = " + "[" * 5000 + "]" * 5000,                       # deep array nesting
    "a = " + "{ b = " * 300 + "1" + " }" * 300,                          # deep inline tables
    "[latent]\nkeyframes = { seeds = [" + ", ".join(["1"] * 100_000) + "] }",   # huge array
    "[params]\nx = nan\n",
    "[params]\nx = { default = 0, min = -inf, max = inf }\n",
    "[clock]\nbpm = inf\n",
    "[lfo]\na = { hz = nan }\n",
    "[lfo]\na = { hz = 1e308 }\n[[route]]\nfrom = \"lfo.a\"\nto = \"noise\"\n",
    "[[route]]\nfrom = \"" + "(" * 500 + "1" + ")" * 500 + "\"\nto = \"noise\"\n",
    "[[route]]\nfrom = \"" + "-" * 5000 + "1\"\nto = \"noise\"\n",
    "[[route]]\nfrom = \"" + "1+" * 3000 + "1\"\nto = \"noise\"\n",
    "[[route]]\nfrom = \"from\"\nto = \"noise\"\n",                        # self-reference
    "[[route]]\nfrom = \"noise\"\nto = \"noise\"\n",
    "[[route]]\nfrom = \"1\"\nto = \"noise\"\ngate = \"gate\"\n",
    "[lfo]\na = { hz = 1 }\n[[route]]\nfrom = \"lfo.a.b\"\nto = \"noise\"\n",
    "[[route]]\nfrom = \"1\"\nto = \"latent.pull\"\nkey = -1\n",
    "[[route]]\nfrom = \"1\"\nto = \"latent.motion\"\nintegrate = { min = nan }\n",
    "[[route]]\nfrom = 1e308\nto = \"latent.motion\"\ncurve = { exp = 50 }\n",
    "[[route]]\nfrom = \"1e300 * 1e300\"\nto = \"noise\"\nintegrate = { bounds = \"wrap\" }\n",
    "[latent]\nmotion = { speed = 100, bound = 100, jitter = 1 }\n",
    "[latent]\nkeyframes = []\n",
    "[latent]\nkeyframes = [true]\n",
    "[latent]\nkeyframes = { files = [] }\n",
    "[latent.walk]\ninterp = \"spline\"\nseconds_per_key = 1e-300\n",
    "[route]\nfrom = 1\n",
    "route = 5\n",
    "[[route]]\n[[route]]\n",
    "\x00\x01\x02",
    "[meta]\nname = \"\\ud800\"\n",
    "[[route]]\nfrom = \"__import__('os').system('x')\"\nto = \"noise\"\n",
    "[[route]]\nfrom = \"param.__class__\"\nto = \"noise\"\n",
    "[[scene]]\n" * 100,                                                 # too many scenes
    "[[scene]]\nname = \"a\"\nnext = \"a\"\nswitch_on = \"switch_on\"\n",
    "[[scene]]\nname = \"a\"\nnext = \"a\"\n",                            # a scene that loops
    "[[scene]]\n[scene.latent]\nkeyframes = { latents = [\"../x\"] }\n",
    "[scenes]\ncrossfade = { beats = 4 }\n[[scene]]\n",
    "[scenes]\ncrossfade = -1\n[[scene]]\n",
    "[scenes]\ncrossfade = { seconds = nan }\n[[scene]]\n",
    "[[cue]]\nat = 0\nscene = 1\n",
    "[[scene]]\n[[cue]]\nat = 1e308\nscene = 1\n",
    "[[scene]]\n[cues]\nloop = nan\n[[cue]]\nat = 0\nscene = 1\n",
    "[[scene]]\n[[cue]]\nat = 0\nscene = 2\n",
    "[[scene]]\n[[cue]]\nat = 0\nscene = \"../x\"\n",
    "[[scene]]\nroute = 3\n",
    "[[scene]]\nname = \"1a\"\n",
    "[[scene]]\n[[scene.route]]\nfrom = \"1\"\nto = \"latent.pull\"\nkey = 5\n",
    "[[scene]]\n[[scene.scene]]\n",
    "[bindings]\nx = { a = 1 }\n",
    "[bindings]\n\"" + "a" * 300 + "\" = \"b\"\n",
    "bindings = 3\n",
    "[[route]]\nfrom = \"chroma\"\nto = \"latent.blend\"\nmode = \"overwrite\"\nlayers = [9, 9]\n",
    "[[route]]\nfrom = \"1\"\nto = \"generator.x\"\n",
    "[[route]]\nfrom = \"1\"\nto = \"generator.\"\n",
    "[[route]]\nfrom = \"1e300\"\nto = \"noise\"\nlayers = \"fine\"\nmode = \"add\"\n",
    "[latent]\nwalk = { layers = [0, 99] }\n",
    "[latent]\nmotion = { mode = \"overwrite\", layers = \"coarse\" }\n",
]


@pytest.mark.parametrize("i", range(len(HOSTILE)))
def test_hostile_inputs(i):
    check(HOSTILE[i])


def test_extreme_valid_values_stay_finite_or_hold():
    m = compile_mapping(parse_mapping(
        '[lfo]\nfast = { shape = "random", hz = 1e6 }\n[latent]\nmotion = { speed = 100 }\n'
        '[[route]]\nfrom = "1e300 * lfo.fast"\nto = "latent.motion"\ncurve = { exp = 50 }\n'
        '[[route]]\nfrom = "1e300"\nto = "noise"\nintegrate = { min = 0, max = 1, '
        'bounds = "bounce" }\n', "fuzz.toml"), SPACE, SR, HOP)
    for _ in range(50):
        m.step_hop({}, {})
        p = m.frame(m.time)
        assert np.all(np.isfinite(p.w_plus)) and 0.0 <= p.noise <= 1.0
