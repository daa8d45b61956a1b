"""CudaDriver on hand-written effect generators (the engine's contract, no scheduler)."""

import pytest

torch = pytest.importorskip("torch")

from gpu.adapters import HostPool, flat_layout, read_peft_adapter, to_flat, write_population  # noqa: E402
from gpu.driver import CudaDriver  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.effects import (  # noqa: E402
    Batch,
    BatchItem,
    Forward,
    ForwardResult,
    Idle,
    LoadJob,
    Now,
    PollForwards,
    PollLoads,
    StartLoad,
    WaitForward,
    WaitLoad,
)
from sim.core.model import Request, Trace  # noqa: E402
from sim.errors import DeadlockError  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


@pytest.fixture(autouse=True)
def _reference_kernels(monkeypatch):
    """CPU ops run the plain-torch references: tests/gpu/kernels' conftest sets
    TRITON_INTERPRET=1 for the whole session, which would interpret every op here."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def drive(driver, gen):
    """The engine's driver loop; returns the generator's collected answers."""
    driver.start()
    result, answers = None, []
    while True:
        try:
            eff = gen.send(result)
        except StopIteration:
            break
        result = driver.handle(eff)
        answers.append((eff, result))
    driver.finish()
    return answers


def _driver(trace, host, n_slots=3):
    return CudaDriver(trace, TINY, host, n_slots=n_slots, device="cpu", dtype=torch.float32)


def _job(lid, spec, slot, stream="compute", mode="per_module", host_mode="pinned"):
    kind = "blocking" if stream == "compute" else "overlap"
    return LoadJob(lid, spec, slot, stream, kind, copy_mode=mode, host_mode=host_mode)


def _slot_matches(driver, slot, path):
    ad = read_peft_adapter(path)
    flat = to_flat(ad, TINY, torch.float32)
    segs, _ = flat_layout(TINY, ad.rank, ad.targets)
    sl = driver.slots
    for s in segs:
        want_a = flat[s.a_off : s.b_off].view(s.rank, s.d_in)
        want_b = flat[s.b_off : s.b_off + s.rank * s.d_out].view(s.rank, s.d_out)
        assert torch.equal(sl.A(s.layer, s.module)[slot, : s.rank], want_a)
        assert torch.equal(sl.Bt(s.layer, s.module)[slot, : s.rank], want_b)
        assert sl.A(s.layer, s.module)[slot, s.rank :].abs().sum() == 0  # rank padding zero
    for m in set(sl.targets) - set(ad.targets):
        assert sl.A(0, m)[slot].abs().sum() == 0
    assert sl.scaling[slot] == pytest.approx(ad.scaling)
    assert sl.ranks[slot] == ad.rank  # the SGMV table reads only the adapter's rank


@pytest.mark.parametrize("mode", ["per_module", "flat"])
@pytest.mark.parametrize("host_mode", ["pinned", "pin_per_load"])
def test_blocking_load_then_forward_leaves_exact_weights(tiny_trace, tiny_host, mode, host_mode):
    d = _driver(tiny_trace, tiny_host)
    a0, a1 = tiny_trace.adapters

    # a1 first into slot 0, then a0 over it: a0's weights must fully replace a1's
    def gen():
        yield StartLoad(_job(0, a1, 0, mode=mode, host_mode=host_mode))
        yield WaitLoad(0)
        yield StartLoad(_job(1, a0, 0, mode=mode, host_mode=host_mode))
        yield StartLoad(_job(2, a1, 1, mode=mode, host_mode=host_mode))
        t = yield WaitLoad(2)
        assert isinstance(t, float)
        items = (BatchItem(0, "a0", 0, 8, 6, 0), BatchItem(1, "a1", 1, 4, 3, 0))
        res = yield Forward(Batch("prefill", items))
        assert isinstance(res, ForwardResult) and res.start <= res.end

    drive(d, gen())
    _slot_matches(d, 0, tiny_host.paths["a0"])
    _slot_matches(d, 1, tiny_host.paths["a1"])
    lanes = {r[0] for r in d.timeline}
    assert {"pcie", "compute"} <= lanes
    assert d.stats.loads == 3
    # each load's copy issuing is a host row, as in the SimPy driver, begun before its copy
    # (on CPU the copies run as they are issued; on CUDA they end after it)
    issue = [r for r in d.timeline if r[0] == "host" and r[3] == "issue"]
    copies = sorted(r for r in d.timeline if r[0] == "pcie")
    assert [r[4] for r in issue] == ["a1", "a0", "a1"]
    assert all(i[1] <= min(i[2], c[1]) for i, c in zip(issue, copies, strict=True))


def test_poll_reports_each_load_once(tiny_trace, tiny_host):
    d = _driver(tiny_trace, tiny_host)
    a0, a1 = tiny_trace.adapters
    seen = []

    def gen():
        yield StartLoad(_job(0, a0, 0, stream="load"))
        yield StartLoad(_job(1, a1, 1, stream="load"))
        for _ in range(50):
            seen.extend((yield PollLoads()))
            if len(seen) == 2:
                break
            yield Idle((yield Now()) + 0.01)
        seen.extend((yield PollLoads()))
        seen.extend((yield PollLoads()))

    drive(d, gen())
    assert sorted(seen) == [0, 1]


def test_forward_times_monotone_and_one_step_end_per_step(tiny_trace, tiny_host):
    d = _driver(tiny_trace, tiny_host)
    a0, a1 = tiny_trace.adapters
    out = {}

    def gen():
        yield StartLoad(_job(0, a0, 0))
        yield StartLoad(_job(1, a1, 1))
        items = (
            BatchItem(0, "a0", 0, 8, 6, 0),
            BatchItem(1, "a1", 1, 4, 3, 0),
            BatchItem(2, None, 2, 0, 5, 0),
        )
        out["prefill"] = yield Forward(Batch("prefill", items))
        dec = (
            BatchItem(0, "a0", 0, 8, 1, 6),
            BatchItem(1, "a1", 1, 4, 1, 3),
            BatchItem(2, None, 2, 0, 1, 5),
        )
        out["decode"] = yield Forward(Batch("decode", dec), max_steps=2)
        dec2 = tuple(BatchItem(i.rid, i.adapter, i.slot, i.rank, 1, i.context + 2) for i in dec[:2])
        ticket = yield Forward(Batch("decode", dec2), wait=False)
        polled = []
        while not polled:
            polled = (yield PollForwards()) or ()
            if not polled:
                yield Idle()
        out["polled"] = polled
        out["launched"] = yield WaitForward(ticket)

    drive(d, gen())
    p, dec, la = out["prefill"], out["decode"], out["launched"]
    assert p.step_ends == ()
    assert len(dec.step_ends) == 2 and len(la.step_ends) == 1
    times = [p.start, p.end, dec.start, *dec.step_ends, la.start, la.end]
    assert times == sorted(times)
    assert dec.end == dec.step_ends[-1]
    assert out["polled"] == (2,)
    assert d.kv.row_of == {}  # every request got its last token: KV rows released
    assert d.kv.free_pages == d.kv.pages  # and their pages


def test_decode_stops_at_until(tiny_trace, tiny_host):
    d = _driver(tiny_trace, tiny_host)
    out = {}

    def gen():
        yield Forward(Batch("prefill", (BatchItem(2, None, -1, 0, 5, 0),)))
        now = yield Now()
        out["r"] = yield Forward(
            Batch("decode", (BatchItem(2, None, -1, 0, 1, 5),)), max_steps=1, until=now
        )

    drive(d, gen())
    assert len(out["r"].step_ends) == 1


@pytest.mark.parametrize("n_req", [1, 2])
def test_warmup_fits_a_one_row_short_context_cache_and_frees_it(tiny_trace, tiny_host, n_req):
    """The warm-up forwards write 3 positions on two rows: a cache of one row, or of a
    context shorter than that, still takes them, and is empty again afterwards."""
    reqs = (Request(0, 0.0, "a0", 1, 1), Request(1, 0.0, None, 1, 1))[:n_req]
    d = _driver(Trace(tiny_trace.adapters, reqs), tiny_host)
    assert d.kv.rows == n_req and d.kv.max_ctx == 2
    d.warmup()
    assert d.kv.row_of == {} and d.kv.free_pages == d.kv.pages


def test_idle_with_nothing_in_flight_raises(tiny_trace, tiny_host):
    d = _driver(tiny_trace, tiny_host)

    def gen():
        yield Idle()

    with pytest.raises(DeadlockError):
        drive(d, gen())


def test_idle_sleeps_until(tiny_trace, tiny_host):
    d = _driver(tiny_trace, tiny_host)
    out = {}

    def gen():
        t0 = yield Now()
        out["t"] = (t0, (yield Idle(t0 + 0.02)))

    drive(d, gen())
    t0, t1 = out["t"]
    assert t1 >= t0 + 0.02


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["per_module", "flat"])
def test_load_stream_copy_on_cuda_is_exact_and_polled_once(tiny_trace, tiny_host, mode):
    d = CudaDriver(tiny_trace, TINY, tiny_host, n_slots=3, device="cuda", dtype=torch.float32)
    a0, a1 = tiny_trace.adapters
    seen = []

    def gen():
        yield StartLoad(_job(0, a0, 0, stream="load", mode=mode, host_mode="pin_per_load"))
        yield StartLoad(_job(1, a1, 1, stream="load", mode=mode))
        while len(seen) < 2:
            seen.extend((yield PollLoads()))
            if len(seen) < 2:
                yield Idle((yield Now()) + 0.001)
        items = (BatchItem(0, "a0", 0, 8, 6, 0), BatchItem(1, "a1", 1, 4, 3, 0))
        yield Forward(Batch("prefill", items))

    drive(d, gen())
    assert sorted(seen) == [0, 1]
    d.slots.pool = d.slots.pool.cpu()
    d.slots._views = {k: d.slots._make_views(s) for k, s in d.slots.layout.items()}
    _slot_matches(d, 0, tiny_host.paths["a0"])
    _slot_matches(d, 1, tiny_host.paths["a1"])


def test_compute_stream_blocking_row_includes_host_pinning(tiny_trace, tiny_host, monkeypatch):
    """As in the SimPy driver, a compute-stream load blocks the compute lane from the start of
    its host work (pinning for pin_per_load), not only for the copy."""
    import time as _time

    from gpu.adapters import HostAdapter

    d = _driver(tiny_trace, tiny_host)
    a0 = tiny_trace.adapters[0]

    def slow_pin(ad, per_module):
        _time.sleep(0.02)
        return HostAdapter(ad.name, ad.rank, ad.targets, ad.scaling, ad.flat.clone(), ad.modules, True)

    monkeypatch.setattr(tiny_host, "pin_for_load", slow_pin)

    def gen():
        yield StartLoad(_job(0, a0, 0, host_mode="pin_per_load"))
        yield WaitLoad(0)

    drive(d, gen())
    pin = [r for r in d.timeline if r[0] == "host" and r[3] == "pin"]
    block = [r for r in d.timeline if r[0] == "compute" and r[3] == "blocking"]
    copy = [r for r in d.timeline if r[0] == "pcie"]
    assert len(pin) == len(block) == len(copy) == 1
    assert block[0][1] <= pin[0][1] + 1e-9 and block[0][2] == copy[0][2]
    assert d.counters["stall_s"] == pytest.approx(block[0][2] - block[0][1])
    assert d.counters["stall_s"] >= 0.02


def test_freeing_a_pin_per_loads_copy_is_a_release_row_when_the_load_is_collected(
    tiny_trace, tiny_host, monkeypatch
):
    """Round 13: freeing a pin_per_load's temporary pinned copies is scheduler time (torch
    records a CUDA event per freed tensor; ~1.6 ms for 448 on the H200). The driver frees them
    when it collects the finished load and times that as a `release` host row, the row the
    SimPy driver prices with pcie.unpin_per_tensor_us; a pinned-host load frees nothing."""
    import time as _time

    from gpu.adapters import HostAdapter

    class SlowToFree:
        def __del__(self):
            _time.sleep(0.02)

    def pin(ad, per_module):
        copy = HostAdapter(ad.name, ad.rank, ad.targets, ad.scaling, ad.flat.clone(), ad.modules, True)
        copy.free_cost = SlowToFree()  # dropped with the copy
        return copy

    monkeypatch.setattr(tiny_host, "pin_for_load", pin)
    d = _driver(tiny_trace, tiny_host)
    a0, a1 = tiny_trace.adapters

    def gen():
        yield StartLoad(_job(0, a0, 0, host_mode="pin_per_load"))
        yield WaitLoad(0)
        yield StartLoad(_job(1, a1, 1, host_mode="pinned"))
        yield WaitLoad(1)

    drive(d, gen())
    release = [r for r in d.timeline if r[0] == "host" and r[3] == "release"]
    (copy0,) = [r for r in d.timeline if r[0] == "pcie" and r[4] == "a0"]
    assert len(release) == 1 and release[0][4] == "a0"
    assert release[0][2] - release[0][1] >= 0.02
    assert release[0][1] >= copy0[2] - 1e-6  # after its copy ended, not while it ran


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pin_that_allocates_host_blocks_is_labelled_and_counted(tiny_trace, tmp_path):
    """Slow pins come from torch's pinned cache running out of free blocks: such a pin's row
    says how many cudaHostAlloc calls it made, and counters count those pins apart."""
    paths = write_population(tmp_path / "adapters", tiny_trace.adapters, TINY, share=False)
    host = HostPool(TINY, paths, mode="pageable")
    d = CudaDriver(tiny_trace, TINY, host, n_slots=3, device="cuda", dtype=torch.float32)
    a0, a1 = tiny_trace.adapters
    torch.cuda.synchronize()
    torch._C._host_emptyCache()  # nothing cached: the first pin must allocate

    def gen():
        yield StartLoad(_job(0, a0, 0, host_mode="pin_per_load"))
        yield WaitLoad(0)
        yield StartLoad(_job(1, a1, 1, host_mode="pin_per_load"))
        yield WaitLoad(1)

    drive(d, gen())
    pins = [r for r in d.timeline if r[3] == "pin"]
    assert len(pins) == 2 and "host allocs" in pins[0][4]
    assert d.counters["pin_alloc_n"] == sum("host allocs" in r[4] for r in pins) >= 1
    assert 0 < d.counters["pin_alloc_s"] <= d.counters["pin_s"]


def _long_decode(tiny_trace):
    """One base-model request of 32 output tokens: the prefill's, then 30 + 1 decode steps."""
    return Trace(tiny_trace.adapters, (Request(0, 0.0, None, 5, 32),))


def _decode_launched_ahead(out):
    """Prefill, then a decode of 30 steps launched without waiting, waited on until the time it
    was launched at, then redeemed; then a decode whose `until` has passed (one step)."""
    yield Forward(Batch("prefill", (BatchItem(0, None, -1, 0, 5, 0),)))
    now = yield Now()
    t = yield Forward(Batch("decode", (BatchItem(0, None, -1, 0, 1, 5),)), max_steps=30, until=now + 3600, wait=False)
    out["early"] = yield WaitForward(t, until=(yield Now()))
    out["full"] = yield WaitForward(t, until=now + 3600)
    now = yield Now()
    t = yield Forward(Batch("decode", (BatchItem(0, None, -1, 0, 1, 35),)), max_steps=4, until=now, wait=False)
    out["cut"] = yield WaitForward(t)


def test_a_decode_launched_ahead_honours_until_and_runs_all_its_steps(tiny_trace, tiny_host):
    """On CPU every step has ended by the time it is launched (as a launch-bound step on a GPU
    can): a wait until a time already come still returns None, after at most one more step,
    rather than running the whole decode first (the scheduler's wake-up at an arrival)."""
    d = _driver(_long_decode(tiny_trace), tiny_host)
    out = {}
    drive(d, _decode_launched_ahead(out))
    assert out["early"] is None and len(out["full"].step_ends) == 30
    assert list(out["full"].step_ends) == sorted(out["full"].step_ends)
    assert len(out["cut"].step_ends) == 1
    assert d.kv.row_of == {}  # the cut step gave the last token: KV row released


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_decode_launched_ahead_on_cuda_goes_on_while_the_scheduler_is_woken(tiny_trace, tiny_host):
    """The launch returns after the first step; waiting until a time returns None while steps
    remain, and the driver launches the rest as it polls (loads_on_arrival's wake-up)."""
    d = CudaDriver(_long_decode(tiny_trace), TINY, tiny_host, n_slots=3, device="cuda", dtype=torch.float32)
    d.warmup()
    out = {}
    drive(d, _decode_launched_ahead(out))
    assert out["early"] is None
    ends = out["full"].step_ends
    assert len(ends) == 30 and list(ends) == sorted(ends)
    assert len(out["cut"].step_ends) == 1
    assert d.kv.row_of == {}


def _layered_run(trace, host, mode, layered, device, monkeypatch=None):
    """Two load-stream copies and, at once, a prefill that uses both (waiting for them layer
    by layer, or whole); -> the driver and the compute-stream waits it issued."""
    d = CudaDriver(trace, TINY, host, n_slots=3, device=device, dtype=torch.float32)
    a0, a1 = trace.adapters
    waits, hold = [], [monkeypatch is not None]
    if monkeypatch is not None:
        # on CPU a copy is done when issued; keep both loads uncollected (as still running
        # copies on CUDA) until the prefill is issued, and record what it waits for
        real_wait, real_collect = d.clock.compute_waits_for, d._collect_loads
        monkeypatch.setattr(d.clock, "compute_waits_for", lambda m: (waits.append(m), real_wait(m)))
        monkeypatch.setattr(d, "_collect_loads", lambda: None if hold[0] else real_collect())

    def gen():
        for lid, spec in ((0, a0), (1, a1)):
            job = LoadJob(lid, spec, lid, "load", "overlap", copy_mode=mode, host_mode="pinned", layered=layered)
            yield StartLoad(job)
        items = (BatchItem(0, "a0", 0, 8, 6, 0), BatchItem(1, "a1", 1, 4, 3, 0))
        yield Forward(Batch("prefill", items), layer_waits=(0, 1) if layered else ())
        hold[0] = False
        while len((yield PollLoads())) < 2 and d._loads_pending():
            yield Idle((yield Now()) + 0.001)

    drive(d, gen())
    return d, waits


@pytest.mark.parametrize("mode", ["per_module", "flat"])
def test_a_layered_copy_is_exact_and_the_prefill_waits_for_each_layer_just_before_it(
    tiny_trace, tiny_host, mode, monkeypatch
):
    d, waits = _layered_run(tiny_trace, tiny_host, mode, True, "cpu", monkeypatch)
    _slot_matches(d, 0, tiny_host.paths["a0"])
    _slot_matches(d, 1, tiny_host.paths["a1"])
    marks = [d.loads[lid].layers for lid in (0, 1)]
    assert [len(m) for m in marks] == [TINY.layers, TINY.layers]
    # layer by layer, both loads: no wait for a whole copy
    assert waits == [marks[lid][j] for j in range(TINY.layers) for lid in (0, 1)]
    plain, plain_waits = _layered_run(tiny_trace, tiny_host, mode, False, "cpu", monkeypatch)
    assert not plain.loads[0].layers
    assert plain_waits == [plain.loads[0].end, plain.loads[1].end]  # whole copies, before it starts
    for j in range(TINY.layers):  # the prefill wrote the same keys and values
        assert torch.equal(d.kv.k[j], plain.kv.k[j]) and torch.equal(d.kv.v[j], plain.kv.v[j])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["per_module", "flat"])
def test_a_prefill_waiting_layer_by_layer_on_cuda_computes_what_a_whole_wait_does(tiny_trace, tiny_host, mode):
    d, _ = _layered_run(tiny_trace, tiny_host, mode, True, "cuda")
    plain, _ = _layered_run(tiny_trace, tiny_host, mode, False, "cuda")
    for j in range(TINY.layers):
        assert torch.equal(d.kv.k[j], plain.kv.k[j]) and torch.equal(d.kv.v[j], plain.kv.v[j])
    pool = d.slots.pool.cpu()
    assert torch.equal(pool[:2], plain.slots.pool.cpu()[:2])
