"""Which torch device runs the models: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

``auto`` takes the first GPU when torch sees one (``torch.cuda.is_available()``), else the
CPU. A CUDA device that is not there is one error line naming it, not a crash deep inside a
model. The result is a plain string ("cpu", "cuda:0") so it travels in configs and to Ray
workers, where :func:`gpus_for` turns it into the GPUs a worker asks for.
"""

from __future__ import annotations

import re

import torch

from edgeva.errors import ConfigError

__all__ = ["DEVICE_HELP", "check_device", "resolve_device", "gpus_for"]

DEVICE_HELP = "Torch device for the models: auto (a GPU when torch sees one, else cpu), cpu, cuda or cuda:N."
_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device(spec: str) -> str:
    """``spec`` lower-cased if it is well formed (``auto``, ``cpu``, ``cuda``, ``cuda:N``); what
    torch sees is not asked (a config may name the GPU of another machine).

    Raises:
        ValueError: a malformed spec.
    """
    text = spec.strip().lower()
    if not _PATTERN.match(text):
        raise ValueError(f"{spec!r}: expected auto, cpu, cuda or cuda:N")
    return text


def resolve_device(spec: str, *, cuda_count: int | None = None, key: str = "--device") -> str:
    """The device ``spec`` names, checked against what torch sees.

    Args:
        spec: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        cuda_count: GPUs visible (default: ``torch.cuda.device_count()`` when CUDA is available).
        key: the option or config key the spec came from, named in errors (``edges[1].device``).

    Returns:
        ``"cpu"`` or ``"cuda:N"``.

    Raises:
        ConfigError: a malformed spec, or a CUDA device torch does not see.
    """
    try:
        text = check_device(spec)
    except ValueError as exc:
        raise ConfigError(f"{key} {exc}") from None
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if text == "auto":
        return "cuda:0" if cuda_count > 0 else "cpu"
    if text == "cpu":
        return "cpu"
    index = int(text.split(":")[1]) if ":" in text else 0
    if index >= cuda_count:
        seen = f"{cuda_count} CUDA device(s)" if cuda_count else "no CUDA device (CPU-only torch build or no GPU)"
        raise ConfigError(f"{key} {spec}: torch sees {seen}")
    return f"cuda:{index}"


def gpus_for(device: str) -> float:
    """GPUs a worker running on ``device`` reserves on a Ray cluster (one for any CUDA device)."""
    return 1.0 if device.startswith("cuda") else 0.0
