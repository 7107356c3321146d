"""How a camera chooses the quality of each chunk it encodes: a small protocol and a registry.

A scheme maps the frames of a chunk to a :class:`~edgeva.video.QualityMap` (a CRF per 16x16
macroblock) or to one CRF for the whole chunk. ``uniform`` is built in; a DNN-aware selector
(AccMPEG) registers itself under its own name with :func:`register_scheme`, and a camera
config selects it with ``encoding.scheme``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from edgeva.registry import Registry
from edgeva.video import QualityMap

if TYPE_CHECKING:
    from edgeva.runtime.config import EncodingConfig

__all__ = ["ChunkQuality", "Uniform", "SCHEMES", "register_scheme", "create_scheme", "list_schemes"]


@runtime_checkable
class ChunkQuality(Protocol):
    """Chooses the encoding quality of one chunk."""

    def quality(self, frames: list[np.ndarray], first_frame: int) -> QualityMap | int:
        """Quality for RGB uint8 ``frames`` whose first is source frame ``first_frame``:
        a per-macroblock map, or one CRF for every block."""
        ...


class Uniform:
    """One CRF everywhere (AWStream-like fixed quality)."""

    def __init__(self, crf: int):
        self.crf = crf

    def quality(self, frames: list[np.ndarray], first_frame: int) -> int:
        return self.crf


SchemeFactory = Callable[["EncodingConfig"], ChunkQuality]
SCHEMES: Registry[SchemeFactory] = Registry("encoding scheme")
register_scheme = SCHEMES.register  # @register_scheme(name): factory(encoding_config) -> ChunkQuality
list_schemes = SCHEMES.names


def create_scheme(config: EncodingConfig) -> ChunkQuality:
    """The scheme a camera's ``encoding`` section names (validated by the config already)."""
    return SCHEMES[config.scheme](config)


@register_scheme("uniform")
def _uniform(config: EncodingConfig) -> ChunkQuality:
    return Uniform(config.crf)
