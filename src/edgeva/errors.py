"""Error types. Every error a user can cause names the input and what is wrong with it.

The CLI prints ``str(error)`` on one line and exits non-zero; no traceback.
"""

from __future__ import annotations

__all__ = ["EdgevaError", "AssetError", "VideoError", "CodecError", "ModelError", "ConfigError"]


class EdgevaError(Exception):
    """Base class of errors caused by input (files, names, options), not by bugs."""


class AssetError(EdgevaError):
    """A sample video or weight file is missing, corrupt or cannot be downloaded."""


class VideoError(EdgevaError):
    """A video source cannot be opened or decoded."""


class CodecError(EdgevaError):
    """Encoding or decoding failed, or the codec options are invalid."""


class ModelError(EdgevaError):
    """Unknown model name, unreadable weights, or an incompatible checkpoint."""


class ConfigError(EdgevaError):
    """A configuration file or option has a bad key or value."""
