"""The GPU harness's commands, `lorasim calibrate` and `lorasim validate`, one module each
(refits of `calibrate` in gpu.cli.refit). torch is imported inside the commands only, so
`lorasim --help` works without it."""

from __future__ import annotations

import typer

from gpu.cli.calibrate import calibrate
from gpu.cli.validate import validate


def register(app: typer.Typer) -> None:
    """Add the commands to `app` (sim.cli registers them when this package imports)."""
    app.command()(calibrate)
    app.command()(validate)
