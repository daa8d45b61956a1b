"""GpuCore: which runs a core can serve, what a reset clears, and cores shared across the
runs of a validation pass (gpu.validate)."""

import pytest

torch = pytest.importorskip("torch")

from gpu.core import GpuCore  # noqa: E402
from gpu.driver import CudaDriver  # noqa: E402
from sim.config import MODEL_PRESETS, parse_scenario  # noqa: E402
from sim.core.model import ALL_TARGETS  # noqa: E402
from tests.gpu.tiny_scenario import SCENARIO  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


@pytest.fixture(autouse=True)
def _reference_kernels(monkeypatch):
    """CPU ops run the plain-torch references: tests/gpu/kernels' conftest sets
    TRITON_INTERPRET=1 for the whole session, which would interpret every op here."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def _spec(**kw):
    base = dict(n_slots=3, max_rank=8, targets=ALL_TARGETS, kv_rows=8, max_ctx=64, device="cpu",
                dtype=torch.float32)
    return GpuCore.spec_for(TINY, **{**base, **kw})


def test_a_core_serves_runs_that_need_no_more_than_it_has():
    big = _spec()
    assert big.serves(_spec(kv_rows=4, max_ctx=32, max_rank=4, targets=("q_proj",)))
    assert not big.serves(_spec(kv_rows=9))
    assert not big.serves(_spec(max_ctx=65))
    assert not big.serves(_spec(max_rank=16))
    assert not big.serves(_spec(n_slots=4))
    assert big.serves(_spec(n_slots=2))  # a run uses the first slots
    assert not big.serves(_spec(prefill_graph_tokens=0))
    assert big.serves(_spec(max_batch_adapters=2))  # all adapter buckets are there
    assert not _spec(max_batch_adapters=2).serves(big)
    assert _spec(max_batch_adapters=4).serves(_spec(max_batch_adapters=2))


def test_driver_runs_on_a_given_core_and_refuses_one_too_small(tiny_trace, tiny_host):
    core = GpuCore(_spec())
    core.kv.row(7), core.kv.row(8, 20)  # left over from an earlier run
    core.slots.ranks[0] = 2
    core.slots.owner[0], core.slots.scaling[0] = "old", 2.0
    d = CudaDriver(tiny_trace, TINY, tiny_host, n_slots=3, device="cpu", dtype=torch.float32,
                   kv_rows=8, max_ctx=64, core=core)
    assert d.model is core.model and d.prefiller is core.prefiller
    kv = core.kv
    assert kv.row_of == {} and kv.capacity == {} and kv.free_pages == kv.pages
    assert [kv.row(rid, 1) for rid in (30, 31)] == [0, 1]  # every row free again, lowest first
    assert core.slots.owner == [None] * 3 and core.slots.scaling == [0.0] * 3
    assert core.slots.ranks == [8] * 3
    small = GpuCore(_spec(kv_rows=2))
    with pytest.raises(ValueError, match="cannot run this trace"):
        CudaDriver(tiny_trace, TINY, tiny_host, n_slots=3, device="cpu", dtype=torch.float32,
                   kv_rows=8, core=small)


def test_a_validation_pass_runs_every_policy_on_one_core(tmp_path):
    from gpu import validate
    from gpu.validate import GpuOptions, run_gpu
    from sim.workload import generate_trace

    validate._CORES.clear()
    sc = parse_scenario(SCENARIO)
    trace = generate_trace(sc)
    opts = GpuOptions(device="cpu", adapter_dir=str(tmp_path))
    for pol in ("lru", "slora", "resident", "overlap"):
        res = run_gpu(sc, pol, trace, opts, reuse=True)
        assert res.summary["completed"] == len(trace.requests)
        assert len(validate._CORES) == 1
    (core,) = validate._CORES
    assert core.spec.n_slots == len(trace.adapters)  # resident needs a slot per adapter
    assert core.spec.max_batch_adapters is None  # graphs for any adapters per batch
    bigger = {**SCENARIO, "workload": {**SCENARIO["workload"], "num_requests": 40}}
    sc2 = parse_scenario(bigger)
    run_gpu(sc2, "lru", generate_trace(sc2), opts, reuse=True)  # needs more KV rows
    assert len(validate._CORES) == 2 and validate._CORES[0] is core
    validate._CORES.clear()
