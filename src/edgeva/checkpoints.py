"""Reading edgeva's checkpoint files: one error line per way a file can be wrong.

Every trained part (the AccMPEG selector, Crucio's codec, NeuroMesh's MAE) saves a dict with
a ``format`` key; :func:`read_checkpoint` opens one and checks that key, so each loader only
rebuilds its own model from the dict (and reports a damaged dict itself).
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgeva.errors import ModelError

__all__ = ["read_checkpoint"]


def read_checkpoint(path: str | Path, what: str, fmt: str) -> dict:
    """The dict saved at ``path``, whose ``format`` must be ``fmt``.

    Args:
        path: the checkpoint file.
        what: what it holds, for messages (``"crucio"``: "no such crucio checkpoint").
        fmt: the ``format`` value its writer stores.

    Raises:
        ModelError: missing, unreadable (truncated, not a torch file) or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such {what} checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # pickle, zip and EOF errors all mean the same to a user
        raise ModelError(f"{path}: not a readable {what} checkpoint ({exc.__class__.__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != fmt:
        raise ModelError(f"{path}: not an edgeva {what} checkpoint")
    return checkpoint
