"""The safe expression language: grammar, functions, numeric guards and hostile input."""

import math

import pytest

from engine.mapping import expr as ex


def ev(text, **env):
    return ex.evaluate(text, {k.replace("__", "."): v for k, v in env.items()})


@pytest.mark.parametrize("text, value", [
    ("1 + 2 * 3", 7.0),
    ("(1 + 2) * 3", 9.0),
    ("1 - 2 - 3", -4.0),          # left-associative
    ("8 / 4 / 2", 1.0),
    ("-2 ^ 2", -4.0),             # power binds tighter than unary minus
    ("2 ^ 3 ^ 2", 512.0),         # right-associative
    ("2 ** 3", 8.0),
    ("2 ^ -1", 0.5),
    ("2 * -3", -6.0),
    ("--3", 3.0),
    ("+3", 3.0),
    ("10 % 3", 1.0),
    ("-1 % 4", 3.0),              # like GLSL mod: sign of the divisor
    ("1 + 1 == 2", 1.0),          # comparison binds loosest
    ("3 < 2", 0.0),
    ("2 >= 2", 1.0),
    ("1 != 1", 0.0),
    (".5 + 1.5e1", 15.5),
])
def test_precedence_and_operators(text, value):
    assert ev(text) == pytest.approx(value)


@pytest.mark.parametrize("text, value", [
    ("sin(pi / 2)", 1.0),
    ("cos(0)", 1.0),
    ("abs(-3)", 3.0),
    ("min(3, 1, 2)", 1.0),
    ("max(3, 1, 2)", 3.0),
    ("clamp(5, 0, 1)", 1.0),
    ("clamp(-5, 0, 1)", 0.0),
    ("mix(0, 10, 0.25)", 2.5),
    ("smoothstep(0, 1, 0.5)", 0.5),
    ("smoothstep(0, 1, 2)", 1.0),
    ("step(0.5, 0.7)", 1.0),
    ("step(0.5, 0.3)", 0.0),
    ("pow(2, 10)", 1024.0),
    ("sqrt(16)", 4.0),
    ("exp(0)", 1.0),
    ("log(exp(2))", 2.0),
    ("floor(-1.5)", -2.0),
    ("fract(-0.25)", 0.75),
    ("fract(2.75)", 0.75),
])
def test_functions(text, value):
    assert ev(text) == pytest.approx(value)


def test_sources_and_params_and_index():
    env = {"bass": 0.5, "param.trails": 0.8, "chroma": [0.0, 0.25, 1.0]}
    assert ex.evaluate("param.trails * (0.5 + 0.5 * bass)", env) == pytest.approx(0.6)
    assert ex.evaluate("chroma[2] + chroma[1]", env) == pytest.approx(1.25)
    node = ex.parse("bass + param.trails * chroma[1]")
    assert [r.name for r in ex.references(node)] == ["bass", "param.trails", "chroma"]


@pytest.mark.parametrize("text", ["1 / 0", "1 % 0", "sqrt(-1)", "log(0)", "(-8) ^ 0.5",
                                  "0 ^ -1", "log(-1)", "floor(1/0)"])
def test_domain_errors_give_nan_not_exceptions(text):
    assert math.isnan(ev(text))


def test_overflow_gives_inf():
    assert math.isinf(ev("exp(1000)"))
    assert math.isinf(ev("10 ^ 400"))


def test_constant_subtrees_are_folded_but_sources_are_not():
    f = ex.compile_expr(ex.parse("2 * 3 + x"))
    assert f({"x": 1.0}) == 7.0
    assert f({"x": 2.0}) == 8.0
    g = ex.compile_expr(ex.parse("sin(0) + 4"))
    assert g({}) == 4.0


@pytest.mark.parametrize("text, fragment", [
    ("__import__('os')", "strings are not allowed"),
    ("__import__(1)", "unknown function"),
    ("open(1)", "unknown function"),
    ("time.__class__", "attribute access is not allowed"),
    ("bass.real", "attribute access is not allowed"),
    ('"abc"', "strings are not allowed"),
    ("'abc'", "strings are not allowed"),
    ("(1)(2)", "unexpected '('"),
    ("[1, 2]", "unexpected '['"),
    ("lambda: 1", "unexpected character ':'"),
    ("x; y", "unexpected character ';'"),
    ("1 +", "unexpected end of expression"),
    ("(1 + 2", "expected ')'"),
    ("1 2", "unexpected '2'"),
    ("", "empty expression"),
    ("1 < 2 < 3", "cannot be chained"),
    ("clamp(1, 2)", "takes 3 arguments"),
    ("sin()", "unexpected ')'"),
    ("min(1)", "at least 2"),
    ("sinn(1)", "did you mean 'sin'"),
    ("sin", "needs arguments"),
    ("1e999", "too large"),
    ("chroma[1.5]", "whole number"),
    ("param.a.b", "unexpected '.'"),
])
def test_rejects_everything_outside_the_language(text, fragment):
    with pytest.raises(ex.ExprError) as info:
        ex.parse(text)
    assert fragment in str(info.value)


def test_error_reports_column():
    with pytest.raises(ex.ExprError) as info:
        ex.parse("bass + $")
    assert info.value.column == 8


@pytest.mark.parametrize("text", [
    "(" * 100_000 + "1" + ")" * 100_000,           # too long
    "(" * 400 + "1" + ")" * 400,                     # too deep
    "-" * 900 + "1",                                 # unary chain
    "2^" * 300 + "2",                                # exponent chain
    "sin(" * 200 + "1" + ")" * 200,                  # nested calls
    "1" + "+1" * 450,                                # too many tokens
])
def test_hostile_input_is_rejected_without_crashing(text):
    with pytest.raises(ex.ExprError):
        ex.parse(text)


def test_moderate_nesting_is_fine():
    assert ex.evaluate("(" * 20 + "1" + ")" * 20) == 1.0
    assert ex.evaluate("-" * 20 + "1") == 1.0
