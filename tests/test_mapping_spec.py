"""Mapping files -> MappingSpec: structure, types and errors that point at the right line."""

import textwrap

import pytest

from engine.errors import MappingError
from engine.mapping import load_mapping, parse_mapping
from engine.mapping.spec import LineIndex

GOOD = textwrap.dedent("""\
    [meta]
    name = "test"

    [params]
    trails = 0.6
    zoom = { default = 0.2, min = -1.0, max = 1.0 }

    [clock]
    bpm = 120

    [latent]
    keyframes = { seeds = [3, 14, 15] }
    walk = { beats_per_key = 8, interp = "linear" }
    truncation = 0.7
    noise = 0.1

    [shaders]
    chain = ["feedback", "rgb_shift"]

    [[route]]
    from = "onset_low"
    to = "latent.push"
    direction = { seed = 7 }
    layers = "coarse"
    envelope = { attack_ms = 5, release_ms = 250 }
    gain = 1.5

    [[route]]
    from = "chroma"
    to = "latent.blend"
    amount = 0.5
    smooth = { attack_ms = 30, release_ms = 400 }

    [[route]]
    from = "param.trails * (0.5 + 0.5 * level) + 0 * beat_phase"
    to = "shader.feedback.amount"
    range = [0.1, 0.9]
    clamp = [0, 1]
    smooth = 100
    """)


def parse_error(text: str) -> MappingError:
    with pytest.raises(MappingError) as info:
        parse_mapping(textwrap.dedent(text), "m.toml")
    err = info.value
    assert "\n" not in str(err)
    return err


def test_good_file_parses_into_typed_spec():
    spec = parse_mapping(GOOD, "good.toml")
    assert spec.name == "test" and spec.generator == "builtin:cppn"
    assert spec.params["trails"].default == 0.6
    assert (spec.params["zoom"].min, spec.params["zoom"].max) == (-1.0, 1.0)
    assert spec.bpm == 120.0
    assert spec.latent.seeds == [3, 14, 15]
    assert (spec.latent.walk.unit, spec.latent.walk.per_key) == ("beats", 8.0)
    assert spec.latent.walk.interp == "linear"
    assert spec.shader_chain == ["feedback", "rgb_shift"]
    push, blend, fb = spec.routes
    assert (push.kind, push.direction_seed, push.layers, push.gain) == ("push", 7, "coarse", 1.5)
    assert (push.envelope.attack_ms, push.envelope.release_ms) == (5.0, 250.0)
    assert (blend.kind, blend.vector, blend.width) == ("blend", "chroma", 12)
    assert (fb.kind, fb.uniform, fb.range, fb.clamp) == ("uniform", "feedback.amount",
                                                         (0.1, 0.9), (0.0, 1.0))
    assert (fb.smooth.attack_ms, fb.smooth.release_ms) == (100.0, 100.0)
    assert fb.line == 34 and fb.line_of("range") == 37


def test_toml_syntax_error_reports_its_line():
    err = parse_error("""\
        [meta]
        name = "x"

        [latent]
        truncation = = 0.5
        """)
    assert err.line == 5 and err.path == "m.toml"
    assert str(err).startswith("m.toml:5: TOML syntax error")


def test_unknown_table_with_suggestion():
    err = parse_error("""\
        [meta]
        name = "x"
        [latnet]
        noise = 0.1
        """)
    assert err.line == 3
    assert "unknown table [latnet]" in str(err) and "did you mean 'latent'" in str(err)


def test_unknown_key_in_second_route_points_at_that_key():
    err = parse_error("""\
        [[route]]
        from = "bass"
        to = "noise"

        [[route]]
        from = "mid"
        to = "noise"
        smoth = 100
        """)
    assert err.line == 8
    assert "unknown key 'smoth' in route #2" in str(err) and "did you mean 'smooth'" in str(err)


def test_unknown_feature_with_suggestion():
    err = parse_error("""\
        [[route]]
        to = "noise"
        from = "0.5 * bas + treb"
        """)
    assert err.line == 3
    assert "unknown source 'bas'" in err.message and "did you mean 'bass'" in err.message


@pytest.mark.parametrize("text, line, fragment", [
    ('[[route]]\nfrom = "bass"\nto = "noise"\ngain = true\n', 4, "must be a number, not a boolean"),
    ('[clock]\nbpm = "fast"\n', 2, "clock.bpm must be a number, not a string"),
    ('[latent]\nkeyframes = { seeds = [1, "a"] }\n', 2, "must be an integer, not a string"),
    ('[latent]\nwalk = 4\n', 2, "must be a table"),
    ('[shaders]\nchain = "feedback"\n', 2, "must be an array"),
    ('[params]\nx = "loud"\n', 2, "must be a number"),
    ('[params]\nx = 3\n', 2, "outside the default range 0..1"),
    ('[params]\nx = { default = 5, min = 0, max = 2 }\n', 2, "must be 0..2"),
    ('[[route]]\nfrom = "bass"\nto = "noise"\nrange = [1]\n', 4, "two numbers"),
    ('[[route]]\nfrom = "bass"\nto = "noise"\nsmooth = { attack = 3 }\n', 4, "unknown key 'attack'"),
    ('[[route]]\nfrom = "bass"\nto = "noise"\npower = 0\n', 4, "greater than 0"),
])
def test_wrong_types_and_values(text, line, fragment):
    err = parse_error(text)
    assert err.line == line
    assert fragment in err.message


@pytest.mark.parametrize("text, line, fragment", [
    # unknown target, with suggestion
    ('[[route]]\nfrom = "bass"\nto = "latent.puhs"\n', 3, "did you mean 'latent.push'"),
    # push without direction: reported at the [[route]] header
    ('[meta]\nname = "x"\n[[route]]\nfrom = "bass"\nto = "latent.push"\n', 3, "direction"),
    # direction on a non-push route
    ('[[route]]\nfrom = "bass"\nto = "noise"\ndirection = { seed = 1 }\n', 4,
     "only applies to latent.push"),
    # beats need a bpm
    ('[latent]\nwalk = { beats_per_key = 4 }\n', 2, "needs [clock] bpm"),
    ('[[route]]\nfrom = "beats"\nto = "noise"\n', 2, "needs [clock] bpm"),
    # vector source in a scalar expression / to a scalar target; scalar to blend
    ('[[route]]\nfrom = "chroma * 2"\nto = "noise"\n', 2, "is a vector"),
    ('[[route]]\nfrom = "chroma"\nto = "truncation"\n', 2, "is a vector"),
    ('[[route]]\nfrom = "bass"\nto = "latent.blend"\n', 2, "needs a vector source"),
    ('[[route]]\nfrom = "chroma[12]"\nto = "noise"\n', 2, "out of range"),
    # undeclared parameter, with suggestion
    ('[params]\ntrails = 0.5\n[[route]]\nfrom = "param.trail"\nto = "noise"\n', 4,
     "did you mean 'param.trails'"),
    # shader effect not in the chain
    ('[shaders]\nchain = ["feedback"]\n[[route]]\nfrom = "1"\nto = "shader.feedbak.amount"\n', 5,
     "did you mean 'feedback'"),
    ('[[route]]\nfrom = "1"\nto = "shader.feedback"\n', 3, "shader.<effect>.<input>"),
    # expression syntax error inside from, with column
    ('[[route]]\nto = "noise"\nfrom = "bass +* 2"\n', 3, "column 7"),
    ('[[route]]\nto = "noise"\nfrom = "__import__(\'os\')"\n', 3, "strings are not allowed"),
    # missing keys, single-bracket route, layers name
    ('[[route]]\nto = "noise"\n', 1, "needs 'from'"),
    ('[route]\nfrom = "bass"\nto = "noise"\n', 1, "[[route]]"),
    ('[[route]]\nfrom = "bass"\nto = "latent.push"\ndirection = { seed = 1 }\nlayers = "corse"\n',
     5, "did you mean 'coarse'"),
])
def test_semantic_errors(text, line, fragment):
    err = parse_error(text)
    assert err.line == line, str(err)
    assert fragment in err.message


def test_load_mapping_missing_and_unreadable(tmp_path):
    with pytest.raises(MappingError) as info:
        load_mapping(tmp_path / "nope.toml")
    assert "nope.toml" in str(info.value) and "not found" in str(info.value)
    with pytest.raises(MappingError) as info:
        load_mapping(tmp_path)
    assert str(tmp_path) in str(info.value)
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(MappingError):
        load_mapping(bad)


def test_load_mapping_reads_file_and_names_it_in_errors(tmp_path):
    p = tmp_path / "show.toml"
    p.write_text('[meta]\nname = "show"\n\n[[route]]\nfrom = "bass"\nto = "nosie"\n')
    with pytest.raises(MappingError) as info:
        load_mapping(p)
    assert str(info.value).startswith(f"{p}:6: unknown target 'nosie'")
    p.write_text('[[route]]\nfrom = "bass"\nto = "noise"\n')
    assert load_mapping(p).name == "show"   # no [meta] name: the file's stem


def test_line_index_handles_multiline_values_strings_and_subtables():
    text = textwrap.dedent('''\
        [latent]
        keyframes = { seeds = [
            1, 2,   # a comment with = and [brackets]
            3 ] }
        noise = 0.1
        description = """
        not_a_key = 1
        """
        [[route]]
        from = "a # b"
        to = "noise"
        [[route]]
        "to" = "x"
        [route.smooth]
        attack_ms = 3
        ''')
    idx = LineIndex(text)
    assert idx.line("latent") == 1
    assert idx.line("latent", "keyframes") == 2
    assert idx.line("latent", "noise") == 5
    assert idx.line("latent", "not_a_key") == 1    # inside a string: falls back to the table
    assert idx.line("route", 0) == 9 and idx.line("route", 0, "to") == 11
    assert idx.line("route", 1, "to") == 13
    assert idx.line("route", 1, "smooth", "attack_ms") == 15
    assert idx.line("route", 0, "smooth") == 9      # absent: the route header
