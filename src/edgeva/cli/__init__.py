"""The ``edgeva`` command line. Each sub-module adds its commands to ``app``."""

from __future__ import annotations

import sys

from edgeva.cli import accmpeg as _accmpeg  # noqa: E402,F401  (stream, accgrad, selector, bench camera)
from edgeva.cli import apps as _apps  # noqa: E402,F401  (apps train/run/eval, bench apps)
from edgeva.cli import bench as _bench  # noqa: E402,F401  (bench ...)

# Importing a command module registers its commands.
from edgeva.cli import core as _core  # noqa: E402,F401  (info, detect, encode, demo)
from edgeva.cli import crucio as _crucio  # noqa: E402,F401  (crucio train)
from edgeva.cli import demo as _demo  # noqa: E402,F401  (demo)
from edgeva.cli import evaluation as _evaluation  # noqa: E402,F401  (eval, runs)
from edgeva.cli import neuromesh as _neuromesh  # noqa: E402,F401  (neuromesh train)
from edgeva.cli import ops as _ops  # noqa: E402,F401  (dashboard, migrate)
from edgeva.cli import runtime as _runtime  # noqa: E402,F401  (cloud, edge, camera, cluster, results, bench policies)
from edgeva.cli.app import app, console, err_console
from edgeva.errors import EdgevaError

__all__ = ["app", "main", "console"]


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2."""
    try:
        app()
    except EdgevaError as exc:
        err_console.print(f"edgeva: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("edgeva: interrupted", markup=False)
        sys.exit(130)
