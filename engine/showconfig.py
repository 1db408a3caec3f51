"""``lj run --config show.toml``: an installation's options in one TOML file.

Every key is the long name of an ``lj run`` option (``osc-port`` or ``osc_port``), with the value
it would take on the command line; options given on the command line win over the file. A
``[schedule]`` table may hold the on/off hours as ``hours = [...]``. Relative paths to read
(``mapping``, ``audio``, a cue file) are taken relative to the file's folder when the file they
name is there; relative paths to write (``log``, ``stills``) always are. The file is read with :mod:`tomllib` and never executed
(a regular file of at most ``safeio.LIMITS["config"]`` bytes, nested at most
:data:`engine.safeio.MAX_DEPTH` deep, else one ``ConfigError`` line)::

    installation = true
    input = "USB Audio"
    mapping = "gallery.toml"
    log = "/var/log/lj/show.log"
    health-port = 9100
    osc-port = 9000

    [schedule]
    hours = ["mon-fri 10:00-18:00", "sat,sun 12:00-20:00"]
"""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from engine import safeio
from engine.errors import LJError

#: Keys that name files to read: relative to the config file's folder when the file is there
#: (else as given, so shipped mapping names like ``gallery_drift`` still work).
PATH_KEYS = ("mapping", "audio", "cues", "cue_file", "cue_list")
#: Keys that name files or folders to write: always relative to the config file's folder.
OUTPUT_KEYS = ("log", "stills")
#: Options that make no sense in a config file.
NOT_IN_CONFIG = ("help", "config")


class ConfigError(LJError):
    """A config file that cannot be used (one line naming the file and the key)."""


def load_config(path: str | Path) -> dict:
    """Read ``path`` as TOML; a flat dict of option dests (``osc_port``) to values."""
    p = Path(path)
    try:
        data = safeio.toml_loads(safeio.read_text(p, safeio.LIMITS["config"], "config file"), p)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except safeio.FileRefused as exc:  # too large, too deep, not a regular file, not UTF-8
        raise ConfigError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: {str(exc).splitlines()[0]}") from None
    flat: dict = {}
    for key, value in data.items():
        dest = key.replace("-", "_")
        if dest == "schedule" and isinstance(value, dict):
            unknown = set(value) - {"hours"}
            if unknown:
                raise ConfigError(f"{p}: [schedule] knows only 'hours', not "
                                  f"{', '.join(sorted(unknown))}")
            value = value.get("hours", [])
        elif isinstance(value, dict):
            raise ConfigError(f"{p}: unknown table [{key}] (the only table is [schedule])")
        flat[dest] = value
    for dest in PATH_KEYS:
        value = flat.get(dest)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            beside = p.parent / value
            if beside.exists():
                flat[dest] = str(beside)
    for dest in OUTPUT_KEYS:
        value = flat.get(dest)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            flat[dest] = str(p.parent / value)
    return flat


def _convert(p: Path, action: argparse.Action, key: str, value):
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"{p}: {key} must be true or false, not {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_convert_one(p, action, key, v) for v in items]
    if isinstance(value, list):
        raise ConfigError(f"{p}: {key} takes one value, not a list")
    return _convert_one(p, action, key, value)


def _convert_one(p: Path, action: argparse.Action, key: str, value):
    if isinstance(value, (dict, list)) or isinstance(value, bool):
        raise ConfigError(f"{p}: {key}: expected a single value, not {value!r}")
    text = str(value)
    if action.type is None:
        return text
    try:
        return action.type(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        raise ConfigError(f"{p}: {key}: {exc}") from None


def apply_config(subparser: argparse.ArgumentParser, path: str | Path) -> dict:
    """Make the config file's values the defaults of ``subparser`` (so the command line still
    wins when the arguments are parsed again). Returns the defaults set."""
    p = Path(path)
    values = load_config(p)
    actions = {a.dest: a for a in subparser._actions if a.option_strings}
    defaults = {}
    for dest, value in values.items():
        action = actions.get(dest)
        if action is None or dest in NOT_IN_CONFIG:
            known = ", ".join(sorted(d.replace("_", "-") for d in actions
                                     if d not in NOT_IN_CONFIG))
            raise ConfigError(f"{p}: unknown key '{dest.replace('_', '-')}' (known: {known})")
        defaults[dest] = _convert(p, action, dest.replace("_", "-"), value)
    subparser.set_defaults(**defaults)
    return defaults
