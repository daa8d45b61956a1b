"""Shared fixtures for the GPU-harness tests (tiny shapes, CPU unless CUDA is present)."""

import os

import pytest

torch = pytest.importorskip("torch")

from gpu.adapters import HostPool, write_population  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import ALL_TARGETS, AdapterSpec, Request, Trace  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Keep Triton's interpreter to the kernel tests: tests/gpu/kernels/conftest.py sets
    TRITON_INTERPRET at collection, and under it every other CPU test's model would run
    its Triton kernels interpreted (47 min instead of about 2)."""
    saved = os.environ.get("TRITON_INTERPRET")
    if "kernels" not in item.path.parts:
        os.environ.pop("TRITON_INTERPRET", None)
    yield
    item._saved_interpret = saved


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    if (saved := getattr(item, "_saved_interpret", None)) is not None:
        os.environ["TRITON_INTERPRET"] = saved


@pytest.fixture
def tiny_trace() -> Trace:
    ads = (
        AdapterSpec.from_shape("a0", 8, ALL_TARGETS, TINY),
        AdapterSpec.from_shape("a1", 4, ("q_proj", "v_proj"), TINY),
    )
    reqs = (
        Request(0, 0.0, "a0", 6, 4),
        Request(1, 0.0, "a1", 3, 3),
        Request(2, 0.0, None, 5, 2),
    )
    return Trace(ads, reqs)


@pytest.fixture
def tiny_host(tmp_path, tiny_trace):
    paths = write_population(tmp_path / "adapters", tiny_trace.adapters, TINY, share=False)
    return HostPool(TINY, paths, mode="pinned")
