"""Bad command lines, as a user (or a typo in a script) gives them to the real ``lj``.

Every row of :data:`BAD` runs ``python -m engine ARGS`` in a subprocess and must end with exit
status 2, exactly one line on stderr (``lj: error: ...``) naming the problem, and no traceback.
A new option is covered by adding a row; :func:`test_every_numeric_option_is_bounded` also walks
the parser so that no option takes a bare ``int``/``float`` (which accept ``nan``, ``inf`` and
negative values without a word).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from engine.audio.demo import write_demo_wav

LJ = [sys.executable, "-m", "engine"]
NO_DIR = "/nonexistent-lj-test/dir"


@pytest.fixture(scope="module")
def where(tmp_path_factory):
    """Placeholders of the rows: a short song, an existing file, a folder, a missing folder."""
    tmp = tmp_path_factory.mktemp("cli")
    song = write_demo_wav(tmp / "song.wav", seconds=0.5)
    afile = tmp / "afile"
    afile.write_text("not a folder")
    config = tmp / "show.toml"
    config.write_text("osc-smoothing = nan\n")  # TOML's own nan: the same converters apply
    return {"song": str(song), "file": str(afile), "dir": str(tmp), "out": str(tmp / "o.mp4"),
            "ts": str(tmp / "x.ts"), "none": str(tmp / "no-images"), "config": str(config)}


def lj(args, timeout=120):
    env = dict(os.environ)
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "LJ_DEBUG"):
        env.pop(name, None)
    return subprocess.run([*LJ, *args], capture_output=True, text=True, timeout=timeout, env=env)


# Prefixes that keep a row cheap if the option were (wrongly) accepted: tiny sizes, no devices.
RUN = ["run", "--headless", "--no-osc", "--frames", "2"]
RENDER = ["render", "{song}", "-o", "{out}", "--size", "16"]
DEMO = ["demo", "--headless", "--size", "16", "--duration", "0.5", "-o", "{out}"]
EXPLORE = ["explore", "builtin:cppn", "-o", "{dir}/ex", "--size", "16", "--seeds", "0-1",
           "--samples", "16"]
TRAIN = ["train", "{none}", "-o", "{dir}/run"]
FINETUNE = ["finetune", "model.safetensors", "{none}", "-o", "{dir}/ft"]
EXPORT = ["export", "builtin:cppn", "-o", "{ts}"]

#: (arguments, text the one error line must contain). ``(see lj CMD -h)`` is checked for
#: every argparse error (rows whose needle starts with an option name or argparse's words).
BAD = [
    # the top level and argparse's own errors
    (["--bogus"], "unrecognized arguments: --bogus (see lj -h)"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    ([*RENDER, "--bogus"], "unrecognized arguments: --bogus (see lj render -h)"),
    (["render"], "the following arguments are required: song"),
    (["check"], "the following arguments are required: mapping (see lj check -h)"),
    (["devices", "--bogus"], "(see lj devices -h)"),
    (["run", "--size"], "--size: expected one argument (see lj run -h)"),
    # sizes, frame rates, scales
    ([*EXPLORE, "--size", "0"], "--size must be a whole number between 16 and 4096, not 0"),
    ([*RENDER, "--size", "huge"], "--size must be a whole number"),
    ([*RENDER, "--size", "99999999"], "--size must be a whole number between 16 and 4096"),
    ([*RENDER, "--render-scale", "100"], "--render-scale must be between 0.1 and 4, not '100'"),
    ([*RENDER, "--render-scale", "0"], "--render-scale must be between 0.1 and 4"),
    ([*RENDER, "--render-scale", "nan"], "--render-scale must be between 0.1 and 4"),
    ([*RENDER, "--size", "2048", "--render-scale", "4"], "at most 4096"),
    ([*RENDER, "--fps", "0"], "--fps must be a whole number between 1 and 240"),
    ([*RENDER, "--fps", "100000"], "--fps must be a whole number between 1 and 240"),
    ([*DEMO, "--fps", "-5"], "--fps must be a whole number between 1 and 240"),
    ([*DEMO, "--duration", "inf"], "--duration must be above 0 and at most 600"),
    ([*DEMO, "--duration", "1e9"], "--duration must be above 0 and at most 600"),
    ([*DEMO, "--duration", "nan"], "--duration must be above 0 and at most 600"),
    ([*EXPORT, "--size", "0"], "--size must be a whole number between 16 and 4096"),
    ([*EXPORT, "--class", "-1"], "--class must be a whole number between 0"),
    # the live loop's numbers
    ([*RUN, "--osc-smoothing", "nan"], "--osc-smoothing must be between 0 and 60, not 'nan'"),
    ([*RUN, "--osc-smoothing", "inf"], "--osc-smoothing must be between 0 and 60"),
    ([*RUN, "--osc-smoothing", "-1"], "--osc-smoothing must be between 0 and 60"),
    ([*RUN, "--config", "{config}"], "show.toml: osc-smoothing: must be between 0 and 60, not 'nan'"),
    ([*RUN, "--frames", "-1"], "--frames must be a whole number between 1"),
    ([*RUN, "--frames", "0"], "--frames must be a whole number between 1"),
    ([*RUN, "--seconds", "inf"], "--seconds must be a finite number above 0"),
    ([*RUN, "--seconds", "nan"], "--seconds must be a finite number above 0"),
    ([*RUN, "--seconds", "-1"], "--seconds must be a finite number above 0"),
    ([*RUN, "--record-fps", "0"], "--record-fps must be between 1 and 240"),
    ([*RUN, "--record-fps", "inf"], "--record-fps must be between 1 and 240"),
    ([*RUN, "--target-fps", "nan"], "--target-fps must be between 1 and 1000"),
    ([*RUN, "--target-fps", "1e9"], "--target-fps must be between 1 and 1000"),
    ([*RUN, "--monitor", "-1"], "--monitor must be a whole number between 0 and 63"),
    ([*RUN, "--class", "-1"], "--class must be a whole number between 0"),
    ([*RUN, "--osc-port", "70000"], "--osc-port: expected a UDP port number"),
    ([*RUN, "--health-port", "-1"], "--health-port: expected a UDP port number"),
    ([*RUN, "--output-size", "0x0"], "--output-size: 0x0: each side must be 16..8192 pixels"),
    ([*RUN, "--output-size", "big"], "--output-size: expected WIDTHxHEIGHT"),
    # folders that are files, files whose folder is missing
    ([*RUN, "--presets", "{file}"], "--presets must be a folder, but"),
    ([*RUN, "--stills", "{file}"], "--stills must be a folder, but"),
    ([*RUN, "--record-dir", "{file}"], "--record-dir must be a folder, but"),
    ([*RUN, "--record", NO_DIR + "/x.mp4"], f"--record: the folder '{NO_DIR}' does not exist"),
    ([*RUN, "--record", "{dir}"], "--record must be a file name, but"),
    (["export", "builtin:cppn", "-o", NO_DIR + "/x.ts"], f"--output: the folder '{NO_DIR}' does not exist"),
    (["render", "{song}", "-o", NO_DIR + "/x.mp4"], f"--output: the folder '{NO_DIR}' does not exist"),
    ([*DEMO, "-o", NO_DIR + "/x.mp4"], f"--output: the folder '{NO_DIR}' does not exist"),
    (["analyze", "{song}", "-o", "{file}"], "--output must be a folder, but"),
    ([*EXPLORE, "-o", "{file}"], "--output must be a folder, but"),
    ([*EXPLORE, "--latents", "{file}"], "--latents must be a folder, but"),
    ([*TRAIN, "-o", "{file}"], "--output must be a folder, but"),
    # generator specs
    (["export", "builtin:nope", "-o", "{ts}"], "built-ins: builtin:cppn, builtin:flow"),
    ([*RENDER, "--generator", "builtin:nope"], "built-ins: builtin:cppn, builtin:flow"),
    ([*EXPORT, "--class", "3"], "builtin:cppn takes no #options"),
    # lj explore
    ([*EXPLORE, "--steps", "1"], "--steps must be a whole number between 2 and 256"),
    ([*EXPLORE, "--steps", "1000000"], "--steps must be a whole number between 2 and 256"),
    ([*EXPLORE, "--extent", "nan"], "--extent must be above 0"),
    ([*EXPLORE, "--extent", "inf"], "--extent must be above 0"),
    ([*EXPLORE, "--knobs", "0"], "--knobs must be a whole number between 1"),
    ([*EXPLORE, "--psi", "nan"], "--psi must be between -10 and 10"),
    ([*EXPLORE, "--psi=-inf"], "--psi must be between -10 and 10"),
    ([*EXPLORE, "--samples", "1000000000000"], "--samples must be a whole number between 2"),
    ([*EXPLORE, "--components", "0"], "--components must be a whole number between 1"),
    ([*EXPLORE, "--cell", "0"], "--cell must be a whole number between 8 and 1024"),
    ([*EXPLORE, "--batch", "-1"], "--batch must be a whole number between 1"),
    ([*EXPLORE, "--base", "-1"], "--base must be a whole number between 0"),
    ([*EXPLORE, "--seeds", "0-4294967295"], "at most 4096 seeds"),
    # lj train / finetune / uncanny
    ([*TRAIN, "--steps", "-1"], "--steps must be a whole number between 1"),
    ([*TRAIN, "--batch", "0"], "--batch must be a whole number between 1 and 4096"),
    ([*TRAIN, "--lr", "nan"], "--lr must be above 0 and at most 1"),
    ([*TRAIN, "--lr", "-0.1"], "--lr must be above 0 and at most 1"),
    ([*TRAIN, "--r1-gamma", "inf"], "--r1-gamma must be between 0 and 10000"),
    ([*TRAIN, "--ada-target", "nan"], "--ada-target must be between 0 and 1"),
    ([*TRAIN, "--ada-kimg", "inf"], "--ada-kimg must be above 0"),
    ([*TRAIN, "--ada-kimg", "0"], "--ada-kimg must be above 0"),
    ([*TRAIN, "--style-mixing", "nan"], "--style-mixing must be between 0 and 1"),
    ([*TRAIN, "--pl-weight", "nan"], "--pl-weight must be between 0 and 10000"),
    ([*TRAIN, "--pl-weight", "-1"], "--pl-weight must be between 0 and 10000"),
    ([*TRAIN, "--sample-every", "-1"], "--sample-every must be a whole number between 0"),
    ([*TRAIN, "--checkpoint-every", "-1"], "--checkpoint-every must be a whole number between 0"),
    ([*TRAIN, "--snapshot-every", "-1"], "--snapshot-every must be a whole number between 0"),
    ([*TRAIN, "--seed", "-1"], "--seed must be a whole number between 0"),
    ([*TRAIN, "--channels", "0"], "--channels must be a whole number between 1"),
    ([*TRAIN, "--resolution", "99999999"], "--resolution must be a whole number between"),
    ([*TRAIN, "--size", "65536x65536"], "--size must have sides between 8 and 4096 pixels"),
    ([*TRAIN, "--size", "wide"], "--size must be WIDTHxHEIGHT"),
    ([*TRAIN, "--z-dim", "0"], "--z-dim must be a whole number between 1"),
    ([*TRAIN, "--mapping-layers", "0"], "--mapping-layers must be a whole number between 1"),
    ([*FINETUNE, "--ratio", "nan"], "--ratio must be between 0 and 1"),
    ([*FINETUNE, "--ratio", "-1"], "--ratio must be between 0 and 1"),
    (["uncanny", "{dir}", "-o", "{dir}/u", "--lr", "inf"], "--lr must be above 0"),
]


def _filled(args, where):
    return [a.format(**where) for a in args]


@pytest.mark.parametrize("args,needle", BAD, ids=[" ".join(a[-2:]) for a, _ in BAD])
def test_a_bad_command_line_is_one_line_and_exit_2(args, needle, where):
    result = lj(_filled(args, where))
    err = result.stderr
    assert "Traceback" not in err, err
    assert result.returncode == 2, (result.returncode, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lj: error: "), err
    assert needle.format(**where) in lines[0], lines[0]
    if needle.startswith("-") or needle.startswith(("unrecognized", "the following", "invalid")):
        command = next((a for a in args if not a.startswith("-")), None)
        hint = f"(see lj {command} -h)" if command and command != "nosuch" else "(see lj -h)"
        assert lines[0].endswith(hint), lines[0]


def _numeric(convert) -> bool:
    """Whether an option's converter makes numbers (tried on a few plain values)."""
    for text in ("1", "16", "0.5", "100"):
        try:
            value = convert(text)
        except (argparse.ArgumentTypeError, ValueError):
            continue
        return isinstance(value, (int, float))
    return False


def _numeric_actions():
    from engine.cli import build_parser

    def walk(parser, name):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    yield from walk(sub, sub_name)
            elif action.option_strings and action.type is not None and _numeric(action.type):
                yield name, action

    return list(walk(build_parser(), None))


def test_every_numeric_option_is_bounded():
    """No option takes a bare int or float, and every typed option refuses nan, inf, -inf and
    1e999 (a future option with a new converter is checked here without a new row)."""
    from engine.cli import build_parser

    parser = build_parser()
    actions = _numeric_actions()
    assert len(actions) > 40
    bare = [f"lj {cmd} {a.option_strings[0]}" for cmd, a in actions if a.type in (int, float)]
    assert not bare, f"unbounded options: {bare}"
    for cmd, action in actions:
        for value in ("nan", "inf", "-inf", "1e999"):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(value)
        if cmd is not None:
            with pytest.raises(SystemExit) as exc:
                parser.parse_args([cmd, f"{action.option_strings[0]}=nan"])
            assert exc.value.code == 2


def test_main_returns_2_and_prints_one_line_for_a_bad_option(capsys):
    from engine.cli import main

    assert main(["run", "--frames", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == ("lj: error: --frames must be a whole number between 1 and 1000000000, "
                   "not -1 (see lj run -h)\n")
    assert main(["--version"]) == 0


@pytest.mark.parametrize("exc,needle", [
    (RecursionError("maximum recursion depth exceeded"), "nested too deeply"),
    (MemoryError(), "out of memory"),
    (PermissionError(13, "Permission denied", "/some/file"), "/some/file: Permission denied"),
    (ValueError("line one\nline two"), "unexpected ValueError: line one | line two"),
])
def test_anything_escaping_a_command_is_one_line(monkeypatch, capsys, exc, needle):
    """The top-level handler: what a command lets escape is still one line and status 2."""
    from engine import cli

    def boom(args):
        raise exc

    monkeypatch.delenv("LJ_DEBUG", raising=False)
    monkeypatch.setitem(cli.COMMANDS, "devices", boom)
    assert cli.main(["devices"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lj: error: ") and needle in err, err


def test_interrupt_is_quiet_and_130(monkeypatch, capsys):
    from engine import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "devices", interrupted)
    assert cli.main(["devices"]) == 130
    assert capsys.readouterr().err == "lj: interrupted\n"


def test_an_unresolvable_osc_address_names_the_real_option(where):
    """``--osc-listen`` with a name that cannot be resolved (a 64-letter label fails without
    asking DNS): the hint names --osc-listen, which exists (it used to say --osc-host)."""
    result = lj(["run", "--headless", "--audio", where["song"], "--frames", "2",
                 "--osc-listen", "a" * 64, "--no-oscquery", "--no-zeroconf"])
    lines = [line for line in result.stderr.splitlines() if line.startswith("lj: error:")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and "check --osc-listen" in lines[0], result.stderr


def test_every_option_a_message_names_exists():
    """Hints in the engine's messages ("check --osc-listen", "see --presets") name options that
    exist: every ``--name`` in engine/ source is one of lj's options (or a known outside one)."""
    import re
    from pathlib import Path

    from engine.cli import build_parser

    known = set()

    def walk(parser):
        for action in parser._actions:
            known.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    outside = {"--fp32"}  # NVlabs' train.py option, named in stylegan3.py's docstring
    root = Path(__file__).resolve().parent.parent / "engine"
    wrong = {}
    for path in sorted(root.rglob("*.py")):
        for name in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", path.read_text(encoding="utf-8")):
            if name not in known and name not in outside:
                wrong.setdefault(name, path.name)
    assert not wrong, wrong


def test_a_config_nested_too_deep_is_one_line(tmp_path):
    """What escapes while the options are still being read (here tomllib's RecursionError on a
    config nested 100k deep) reaches the same handler: one line, exit 2, no 3,000-line traceback."""
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    result = lj(["run", "--config", str(deep), "--headless", "--no-osc", "--frames", "2"])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lj: error: "), result.stderr[-2000:]
