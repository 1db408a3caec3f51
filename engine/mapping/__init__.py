"""The mapping stage: a TOML mapping file -> per-hop conditioning -> per-frame FrameParams.

``load_mapping``/``parse_mapping`` read and validate a file (``spec.py``), ``compile_mapping``
ties it to a generator's latent space (``compile.py``). The file format is documented in
``docs/mapping.md``.
"""

from engine.mapping.compile import Mapping, compile_mapping
from engine.mapping.spec import MappingSpec, load_mapping, parse_mapping

__all__ = ["load_mapping", "parse_mapping", "compile_mapping", "Mapping", "MappingSpec"]
