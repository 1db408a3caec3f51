"""ISF reading and translation: header parsing, errors at the file's own lines, community-style
shaders running through the Renderer on a real EGL context."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ShaderError
from engine.render.context import headless_context
from engine.render.isf import load_isf, parse_isf
from engine.render.pipeline import Renderer


@pytest.fixture(scope="module")
def ctx():
    c = headless_context()
    yield c
    c.release()


# A filter written the way community ISF files are: GLSL 1.x spellings, ISF macros, v1 names.
COMMUNITY = """/*{
    "DESCRIPTION": "invert, mixed",
    "CREDIT": "someone",
    "ISFVSN": "2",
    "CATEGORIES": ["Color Effect"],
    "INPUTS": [
        {"NAME": "inputImage", "TYPE": "image"},
        {"NAME": "mixAmount", "TYPE": "float", "DEFAULT": 1.0, "MIN": 0.0, "MAX": 1.0, "LABEL": "Mix"}
    ]
}*/

varying vec2 unusedVarying;

void main() {
    vec4 c = IMG_THIS_PIXEL(inputImage);
    vec4 d = texture2D(inputImage, vv_FragNormCoord);
    vec4 inv = vec4(1.0 - d.rgb, d.a);
    gl_FragColor = mix(c, inv, mixAmount);
}
"""


def test_header_parsed():
    s = parse_isf(COMMUNITY, "shaders/inv.fs")
    assert s.description == "invert, mixed" and s.categories == ["Color Effect"]
    assert [(i.name, i.type) for i in s.inputs] == [("inputImage", "image"), ("mixAmount", "float")]
    mix = s.inputs[1]
    assert (mix.default, mix.min, mix.max, mix.label) == (1.0, 0.0, 1.0, "Mix")
    assert len(s.passes) == 1 and s.passes[0].target is None
    assert s.source.startswith("#version 330\n")
    assert "gl_FragColor" not in s.source and "texture2D" not in s.source
    # body lines keep their place: file line 15 is GLSL line 15 + preamble
    assert s.source.splitlines()[s.preamble_lines + 14].strip() == "vec4 c = IMG_THIS_PIXEL(inputImage);"


def test_community_filter_loads_and_acts(ctx, tmp_path):
    (tmp_path / "inv.fs").write_text(COMMUNITY)
    r = Renderer(ctx, (16, 16), (16, 16), ["inv"], tmp_path)
    assert r.errors == [] and "inv.mixAmount" in r.inputs
    img = np.full((16, 16, 3), (200, 50, 10), np.uint8)
    r.render(img)                                           # DEFAULT 1.0: fully inverted
    assert np.abs(r.read()[8, 8].astype(int) - (55, 205, 245)).max() <= 1
    r.render(img, {"inv.mixAmount": 0.0})
    assert np.abs(r.read()[8, 8].astype(int) - (200, 50, 10)).max() <= 1
    r.render(img, {"inv.mixAmount": 7.0})                   # clamped to MAX 1.0
    assert np.abs(r.read()[8, 8].astype(int) - (55, 205, 245)).max() <= 1
    r.release()


def test_bad_json_header_names_file_and_line(tmp_path):
    p = tmp_path / "bad.fs"
    p.write_text('/*{\n    "DESCRIPTION": "x",\n    "INPUTS": [ oops ]\n}*/\nvoid main() {}\n')
    with pytest.raises(ShaderError) as e:
        load_isf(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:3: ") and "JSON" in msg and "\n" not in msg


def test_missing_header_and_bad_names():
    with pytest.raises(ShaderError, match=r"^x\.fs:1: no ISF JSON header"):
        parse_isf("void main() {}\n", "x.fs")
    with pytest.raises(ShaderError, match="not a usable GLSL identifier"):
        parse_isf('/*{"INPUTS": [{"NAME": "a; discard", "TYPE": "float"}]}*/', "x.fs")
    with pytest.raises(ShaderError, match="unknown TYPE"):
        parse_isf('/*{"INPUTS": [{"NAME": "a", "TYPE": "matrix"}]}*/', "x.fs")
    with pytest.raises(ShaderError, match="must be a number"):
        parse_isf('/*{"INPUTS": [{"NAME": "a", "TYPE": "float", "MAX": "big"}]}*/', "x.fs")


@pytest.mark.parametrize("bad_line, expect", [
    ("    float y = ) 1.0;", "syntax error"),
    ("    float y = undefined_name * 2.0;", "undefined_name"),
])
def test_glsl_error_reported_at_file_line(ctx, tmp_path, bad_line, expect):
    lines = [
        "/*{",                                                  # 1
        '  "INPUTS": [{"NAME": "inputImage", "TYPE": "image"},',  # 2
        '             {"NAME": "k", "TYPE": "float"}]',         # 3
        "}*/",                                                  # 4
        "",                                                     # 5
        "void main() {",                                        # 6
        "    vec4 c = IMG_THIS_PIXEL(inputImage);",             # 7
        bad_line,                                               # 8
        "    gl_FragColor = c * k;",                            # 9
        "}",                                                    # 10
    ]
    p = tmp_path / "broken.fs"
    p.write_text("\n".join(lines) + "\n")
    shader = load_isf(p)
    with pytest.raises(ShaderError) as e:
        shader.compile(ctx)
    msg = str(e.value)
    assert msg.startswith(f"{p}:8: "), msg
    assert expect in msg and "\n" not in msg


def test_multipass_target_sizes_and_passindex(ctx, tmp_path):
    (tmp_path / "two.fs").write_text("""/*{
    "INPUTS": [{"NAME": "inputImage", "TYPE": "image"}],
    "PASSES": [{"TARGET": "halfBuf", "WIDTH": "$WIDTH/2", "HEIGHT": "$HEIGHT / 4"}, {}]
}*/
void main() {
    if (PASSINDEX == 0) {
        gl_FragColor = vec4(RENDERSIZE.x / 255.0, RENDERSIZE.y / 255.0, IMG_THIS_PIXEL(inputImage).b, 1.0);
    } else {
        vec4 h = IMG_THIS_PIXEL(halfBuf);
        gl_FragColor = vec4(h.rg, RENDERSIZE.x / 255.0, 1.0);
    }
}
""")
    r = Renderer(ctx, (8, 8), (64, 48), ["two"], tmp_path)
    assert r.errors == []
    r.render(np.zeros((8, 8, 3), np.uint8))
    assert tuple(r.read()[20, 30]) == (32, 12, 64)
    r.release()


def test_vector_long_bool_inputs(ctx, tmp_path):
    (tmp_path / "vec.fs").write_text("""/*{
    "INPUTS": [
        {"NAME": "tint", "TYPE": "color", "DEFAULT": [1.0, 0.5, 0.0, 1.0]},
        {"NAME": "where", "TYPE": "point2D", "DEFAULT": [0.25, 0.75], "MIN": [0, 0], "MAX": [1, 1]},
        {"NAME": "steps", "TYPE": "long", "VALUES": [1, 2, 3], "LABELS": ["a", "b", "c"], "DEFAULT": 2},
        {"NAME": "on", "TYPE": "bool", "DEFAULT": true}
    ]
}*/
void main() {
    gl_FragColor = on ? vec4(tint.r, where.y, float(steps) / 4.0, 1.0) : vec4(0.0);
}
""")
    r = Renderer(ctx, (4, 4), (4, 4), ["vec"], tmp_path)
    assert r.inputs["vec.steps"] == (2.0, 1.0, 3.0)
    r.render(np.zeros((4, 4, 3), np.uint8))
    assert np.abs(r.read()[2, 2].astype(int) - (255, 191, 128)).max() <= 1
    r.render(np.zeros((4, 4, 3), np.uint8), {"vec.where": (0.0, 9.0), "vec.steps": 7})
    assert np.abs(r.read()[2, 2].astype(int) - (255, 255, 191)).max() <= 1
    r.render(np.zeros((4, 4, 3), np.uint8), {"vec.on": 0.0})
    assert r.read().max() == 0
    r.release()


def test_shipped_shaders_parse_and_compile(ctx):
    from pathlib import Path
    shaders = sorted((Path(__file__).resolve().parent.parent / "shaders").glob("*.fs"))
    names = {p.stem for p in shaders}
    assert {"feedback", "rgb_shift", "grade", "vignette"} <= names
    for p in shaders:
        s = load_isf(p)
        s.compile(ctx).release()
        assert s.description
