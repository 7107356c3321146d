"""Streaming schemes compared by the evaluation: AccMPEG, its oracle ceiling and the baselines
(uniform/AWStream, DDS, EAAR, Reducto, Vigil; NeuroMesh and its baselines TileClipper and Crucio)."""

from edgeva.schemes import accmpeg as _accmpeg  # noqa: F401  (registers "accmpeg")
from edgeva.schemes import accmpeg_oracle as _accmpeg_oracle  # noqa: F401
from edgeva.schemes import crucio as _crucio  # noqa: F401  (registers "crucio")
from edgeva.schemes import dds as _dds  # noqa: F401
from edgeva.schemes import eaar as _eaar  # noqa: F401
from edgeva.schemes import neuromesh as _neuromesh  # noqa: F401  (registers "neuromesh")
from edgeva.schemes import reducto as _reducto  # noqa: F401
from edgeva.schemes import tileclipper as _tileclipper  # noqa: F401
from edgeva.schemes import uniform as _uniform  # noqa: F401
from edgeva.schemes import vigil as _vigil  # noqa: F401
from edgeva.schemes.base import (
    ChunkOutcome,
    Scheme,
    SchemeContext,
    Server,
    create_scheme,
    list_schemes,
    register_scheme,
    scheme_class,
)

__all__ = ["ChunkOutcome", "Scheme", "SchemeContext", "Server", "create_scheme", "list_schemes", "register_scheme", "scheme_class"]
