"""A fingerprint of the simulator's code, so stored results are never reused across models.

Sweeps resume by skipping runs already stored under the same key; a key made of the scenario
alone would keep results simulated by older code (or an older profile) after an upgrade and
mix them with new ones. The key therefore also carries this fingerprint of every module of
the `sim` package (the model) and of any hardware profile file the scenario reads.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

_ROOT = Path(__file__).resolve().parent


@cache
def model_revision() -> str:
    """sha1 (12 hex) over the sources of the `sim` package, in path order."""
    h = hashlib.sha1()
    for p in sorted(_ROOT.rglob("*.py")):
        h.update(p.relative_to(_ROOT).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def file_digest(path: str | Path) -> str | None:
    """sha1 (12 hex) of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:12]
    except OSError:
        return None
