"""edgeva: edge video analytics that keeps the server DNN accurate on thin uplinks."""

from __future__ import annotations

__version__ = "0.1.0"

from edgeva.errors import EdgevaError

__all__ = ["EdgevaError", "__version__"]
