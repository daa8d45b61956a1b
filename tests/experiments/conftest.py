"""Fixtures for experiments tests: policy names resolvable even before the builtin policies exist."""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# the fake run functions live next to the tests and must be importable by name (they pickle)
sys.path.insert(0, str(Path(__file__).parent))

import pytest  # noqa: E402

from sim.config import POLICY_NAMES  # noqa: E402
from sim.policies import registry  # noqa: E402


@pytest.fixture(autouse=True)
def _policy_names(monkeypatch):
    """Use the real registry when its builtins import; otherwise a stand-in with the known names."""
    try:
        registry.names()
    except ImportError:
        fake = {name: (lambda **kw: None) for name in (*POLICY_NAMES, "newpol")}
        monkeypatch.setattr(registry, "_REGISTRY", fake)
    yield
