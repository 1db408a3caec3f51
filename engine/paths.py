"""Where the engine finds its shipped files (mappings, shaders).

The repository layout is the installed layout (``pip install -e .``): ``mappings/`` and
``shaders/`` sit next to the ``engine`` package. ``LJ_HOME`` points elsewhere if needed.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME = Path(os.environ.get("LJ_HOME") or Path(__file__).resolve().parent.parent)
MAPPING_DIR = HOME / "mappings"
SHADER_DIR = HOME / "shaders"
DEFAULT_MAPPING = MAPPING_DIR / "default.toml"


def find_mapping(name: str | os.PathLike) -> Path:
    """A mapping path as given, or a shipped mapping by name (``minimal`` -> mappings/minimal.toml)."""
    path = Path(name)
    if path.exists() or path.suffix:
        return path
    shipped = MAPPING_DIR / f"{name}.toml"
    return shipped if shipped.exists() else path
