"""CudaDriver: executes the engine's effects for real (CUDA streams, or synchronously on CPU).

Same answers as the SimPy driver (sim/simpy_driver.py), measured instead of modelled:
- Now: wall clock (perf_counter) since `start()`. Requests arrive on that clock.
- StartLoad: host side first (disk read on a host-tier miss, pin a temporary copy with
  pin_per_load), then the H2D copies on the compute stream (blocking) or the load stream
  (FIFO, one event per load): per module (A and B^T of every layer: hundreds of copies) or
  flat (one copy straight into the slot when layouts match, else one copy into a staging
  buffer and a scatter on device).
- PollLoads: `event.query()` of loads not yet reported; each load is reported once.
- WaitLoad: `event.synchronize()`. Forward: the model on the batch; decode launches a step at
  a time and checks the clock (`until`) and load events (`stop_on_load`) between steps (a
  wait=False decode is carried on while the driver polls; WaitForward may return at `until`).
- Idle: poll-sleep until `until`, a load or a launched forward finishes.
Timeline rows (lane, start, end, kind, label) come from CUDA events, so they show when the
GPU did the work, not when the CPU issued it.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gpu.adapters import HostAdapter, HostPool
from gpu.core import GpuCore
from gpu.model import StepInput
from gpu.prefill_graphs import DEFAULT_MAX_TOKENS
from gpu.staging import to_device
from gpu.streams import Clock, Marker
from sim.core.effects import (
    Batch,
    Evict,
    Forward,
    ForwardResult,
    Idle,
    LoadJob,
    LoadStats,
    Now,
    PollForwards,
    PollLoads,
    ReadHost,
    StartLoad,
    WaitForward,
    WaitLoad,
)
from sim.core.model import ModelShape, Trace
from sim.errors import DeadlockError
from sim.timeline_log import Row

UNIFIED_NEEDS_ARENA = ValueError(
    "serving.adapter_memory: unified (and policy idle_cache) needs a driver built with "
    "unified_pages (gpu.validate.run_gpu sizes the arena from the engine's budget)"
)


def check_memory_model(engine: Any, unified: bool) -> None:
    """One clear error where the engine's memory model and the driver's differ (a unified
    engine on fixed slots, or a slot engine on the arena)."""
    if getattr(engine, "unified", False) != unified:
        raise UNIFIED_NEEDS_ARENA if not unified else ValueError(
            "this driver's adapters live in the unified arena; the engine uses slots"
        )



@dataclass
class _Load:
    job: LoadJob
    start: Marker
    end: Marker
    keep: Any = None  # temporary pinned buffers: alive until the copy has finished
    row_done: bool = False
    # compute-stream loads: the load holds the compute stream from max(host work start,
    # earlier compute work done) to the copy's end, as the SimPy driver's "blocking" row
    host_t0: float | None = None
    queued: Marker | None = None
    layers: list[Marker] = field(default_factory=list)  # a layered load: where each layer ends


@dataclass
class _Decode:
    """A decode forward whose later steps are still to be launched: one step at a time, each
    after the previous one ended and `until`/`stop_on_load` said go on (as the SimPy driver
    cuts a run short). A wait=False decode is carried on wherever the driver looks."""

    eff: Forward
    items: tuple
    rows: list[int]
    rows_t: Any
    lb: Any
    epoch: int = 0  # the driver's adapter-move count its segment table was built at


@dataclass
class _Launch:
    kind: str
    start: Marker
    steps: list[Marker] = field(default_factory=list)
    result: ForwardResult | None = None
    decode: _Decode | None = None  # a decode with steps still to come
    waited: list[tuple[Marker, Marker]] = field(default_factory=list)  # around layer waits


def _layers(src: HostAdapter):
    """(modules, first element, end element) of each layer of an adapter's flat layout, which
    is layer-major: what a layered load copies at a time."""
    for _, group in itertools.groupby(src.modules, key=lambda m: m[0].layer):
        mods = list(group)
        first, last = mods[0][0], mods[-1][0]
        yield mods, first.a_off, last.b_off + last.rank * last.d_out


def _host_allocs() -> int:
    """cudaHostAlloc calls so far by torch's caching host allocator (0 without CUDA)."""
    if not torch.cuda.is_available():
        return 0
    return int(torch.cuda.host_memory_stats().get("num_host_alloc", 0))


class CudaDriver:
    """Runs one engine to completion on a real model. Build once per run (state is per trace)."""

    def __init__(
        self,
        trace: Trace,
        shape: ModelShape,
        host: HostPool,
        *,
        n_slots: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int = 0,
        kv_rows: int | None = None,
        max_ctx: int | None = None,
        poll_s: float = 5e-5,
        eager_decode: bool = False,
        prefill_graph_tokens: int = DEFAULT_MAX_TOKENS,
        max_batch_adapters: int | None = None,
        core: GpuCore | None = None,
        unified_pages: int = 0,
    ):
        """`core`: GPU state of an earlier run to run on (gpu.core; must serve this trace),
        else one is built. eager_decode: one model.forward per decode step (validation
        rounds 1-4); prefill_graph_tokens: largest prefill replayed as graphs (0: eager);
        max_batch_adapters: most distinct adapters a batch can hold (fewer graphs);
        unified_pages: KV and adapters in one arena of that many pages (the serving core's
        unified memory; n_slots is then the most adapters a batch can hold)."""
        self.host, self.poll_s = host, poll_s
        self.requests = {r.rid: r for r in trace.requests}
        spec = GpuCore.spec_for_trace(
            trace,
            shape,
            n_slots=n_slots,
            kv_rows=kv_rows,
            max_ctx=max_ctx,
            device=device,
            dtype=dtype,
            seed=seed,
            eager_decode=eager_decode,
            prefill_graph_tokens=prefill_graph_tokens,
            max_batch_adapters=max_batch_adapters,
            unified_pages=unified_pages,
        )
        if core is None:
            core = GpuCore(spec)
        elif not core.spec.serves(spec):
            raise ValueError(f"the given GPU core ({core.spec}) cannot run this trace ({spec})")
        else:
            core.reset()
        self.core = core
        self.device, self.dtype, self.shape, self.seed = core.device, core.dtype, shape, seed
        self.slots, self.model, self.kv = core.slots, core.model, core.kv
        self.um = core.unified  # the arena (unified memory), or None: fixed slots
        self._freed_at: dict[int, Marker] = {}  # arena pages freed under in-flight compute
        self._lora_epoch = 0  # bumped when an adapter moved in the arena (metas go stale)
        # decode and prefill through the piecewise graphs of gpu.decode_graphs and
        # gpu.prefill_graphs (on CPU the same pieces run eagerly)
        self.decoder, self.prefiller = core.decoder, core.prefiller
        self.clock = Clock(self.device)
        self._staging: dict[str, torch.Tensor] = {}
        self.loads: dict[int, _Load] = {}
        self.unpolled: list[int] = []  # finished, not yet reported by PollLoads
        self.launches: dict[int, _Launch] = {}
        self.fwd_unpolled: list[int] = []
        self._ticket = 0
        self._prompts: dict[int, torch.Tensor] = {}
        self._rows: list[Row] = []
        self.stats = LoadStats()
        self.resident: dict[str, int] | None = None
        self.counters: dict[str, float] = {
            "stall_s": 0.0, "pin_s": 0.0, "disk_s": 0.0, "pin_alloc_n": 0.0, "pin_alloc_s": 0.0,
            "layer_wait_s": 0.0,
        }

    # ---- lifecycle -----------------------------------------------------------------------

    def warmup(self) -> None:
        """Small forwards (Triton compiles, cuBLAS/allocator set-up) and every graph captured,
        so none of it is charged to the first request."""
        toks = torch.zeros(4, dtype=torch.long, device=self.device)
        # two rows (one, twice, in a one-row cache) holding the 3 positions written below
        rids = [-1, -2][: min(2, self.kv.rows)]
        rows = ([self.kv.row(r, min(3, self.kv.max_ctx)) for r in rids] * 2)[:2]
        for lora in (None, self.slots.meta([0, 0, -1, -1])):
            self.model.forward(StepInput(toks, rows, [0, 0], [2, 2], lora), self.kv)
            lora = None if lora is None else self.slots.meta([0, -1])
            self.model.forward(StepInput(toks[:2], rows, [2, 2], [1, 1], lora), self.kv)
        for r in rids:
            self.kv.release(r)
        self.core.capture()
        self.clock.sync()

    def make_resident(self, names: list[str]) -> None:
        """The `resident` oracle places nothing: put every adapter in its own slot up front
        (before `start`), so its forwards still pay for LoRA compute."""
        if len(names) > self.slots.n_slots:
            raise ValueError(f"{len(names)} adapters need as many slots, have {self.slots.n_slots}")
        for i, n in enumerate(names):
            ad = self.host.get(n)
            self._copy(ad, i, "flat", "compute")
            self.slots.scaling[i], self.slots.owner[i] = ad.scaling, n
            self.slots.ranks[i] = ad.rank
        self.clock.sync()
        self.resident = {n: i for i, n in enumerate(names)}

    def start(self) -> None:
        """t = 0 of the trace: call right before running the engine."""
        self.clock.reset()

    def run(self, engine) -> None:
        """Drive the engine in real time. Python's cyclic GC is off meanwhile (objects alive
        at the start are frozen out of it): a full collection over the model's and the
        engine's objects is a pause of tens of ms at a random step, noise the simulator does
        not model (servers do the same: SGLang freezes and tunes its GC)."""
        check_memory_model(engine, self.um is not None)
        gen = engine.run()
        result: Any = None
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            self.start()
            while True:
                try:
                    eff = gen.send(result)
                except StopIteration:
                    break
                result = self.handle(eff)
            self.finish()
        finally:
            gc.enable()
            gc.unfreeze()

    def finish(self) -> None:
        """Wait for all GPU work and resolve every timeline row."""
        self.clock.sync()
        self._collect_loads()
        for ld in self.loads.values():
            self._load_rows(ld)

    @property
    def timeline(self) -> list[Row]:
        return sorted(self._rows, key=lambda r: (r[1], r[0]))

    # ---- effects -------------------------------------------------------------------------

    def handle(self, eff: Any) -> Any:
        if isinstance(eff, Now):
            return self.clock.now()
        if isinstance(eff, PollLoads):
            self._collect_loads()
            out, self.unpolled = tuple(self.unpolled), []
            return out
        if isinstance(eff, PollForwards):
            self._collect_forwards()
            out, self.fwd_unpolled = tuple(self.fwd_unpolled), []
            return out
        if isinstance(eff, StartLoad):
            self._start_load(eff.job)
            return None
        if isinstance(eff, WaitLoad):
            ld = self.loads[eff.lid]
            ld.end.wait()
            self._collect_loads()
            return ld.end.time()
        if isinstance(eff, Forward):
            t = self._launch(eff)
            if not eff.wait:
                return t
            res = self._result(t)
            self._collect_forwards()
            if t in self.fwd_unpolled:
                self.fwd_unpolled.remove(t)
            return res
        if isinstance(eff, WaitForward):
            if eff.until is not None and not self._wait_until(eff.ticket, eff.until):
                return None
            res = self._result(eff.ticket)
            self._collect_forwards()
            if eff.ticket in self.fwd_unpolled:
                self.fwd_unpolled.remove(eff.ticket)
            return res
        if isinstance(eff, Idle):
            return self._idle(eff.until)
        if isinstance(eff, Evict):
            return self._evict(eff.adapters)
        if isinstance(eff, ReadHost):
            return self._read_host(eff)
        raise TypeError(f"unknown effect {eff!r}")

    # ---- loads ---------------------------------------------------------------------------

    def _start_load(self, job: LoadJob) -> None:
        name = job.adapter.name
        self.host.evict(job.host_evicted)
        queued = None
        if job.stream == "compute":
            # when the compute stream has finished the work queued before this load: the
            # blocking row starts there or at the host work (disk read, pin), whichever is later
            with self.clock.stream("compute"):
                queued = self.clock.mark("compute")
        t0 = self.clock.now()
        if job.from_disk:
            self.host.evict(name)  # the engine says it is not in the host tier
        reads = self.host.disk_reads
        ad = self.host.get(name)
        t1 = self.clock.now()
        if self.host.disk_reads > reads:
            self._rows.append(("disk", t0, t1, job.kind, name))
            self.counters["disk_s"] += t1 - t0
        if self.um is not None:
            self.um.lora.check(ad)
        else:
            self.slots.check(ad.rank, ad.targets)
        src = ad
        if job.host_mode == "pin_per_load":
            allocs = _host_allocs()
            src = self.host.pin_for_load(ad, per_module=job.copy_mode == "per_module")
            t2 = self.clock.now()
            if src is not ad:
                # a pin that had to cudaHostAlloc new blocks (torch's pinned cache had none
                # free) is named in its row's label and counted apart: the slow-pin tail
                new = _host_allocs() - allocs
                label = f"{name} (+{new} host allocs)" if new else name
                self._rows.append(("host", t1, t2, "pin", label))
                self.counters["pin_s"] += t2 - t1
                if new:
                    self.counters["pin_alloc_n"] += 1
                    self.counters["pin_alloc_s"] += t2 - t1
        which = "compute" if job.stream == "compute" else "load"
        page = self._arena_place(ad, which) if self.um is not None else None
        t_issue = self.clock.now()
        layers: list[Marker] = []
        with self.clock.stream(which):
            m0 = self.clock.mark(which)
            if page is not None:
                layers = self._copy_arena(src, page, job.copy_mode, which, job.layered)
            elif job.layered:
                layers = self._copy_layered(src, job.slot, job.copy_mode, which)
            else:
                self._copy(src, job.slot, job.copy_mode, which)
            m1 = self.clock.mark(which)
        # the host's time issuing the copies (per module: one call per A/B tensor), as the
        # SimPy driver's `issue` row: the scheduler can do nothing else meanwhile
        self._rows.append(("host", t_issue, self.clock.now(), "issue", name))
        if page is not None:
            self.um.lora.register(name, page, ad.rank, ad.scaling)
        else:
            self.slots.scaling[job.slot] = ad.scaling
            self.slots.ranks[job.slot] = ad.rank
            self.slots.owner[job.slot] = name
        self.loads[job.lid] = _Load(
            job, m0, m1, keep=src if src is not ad else None, host_t0=t0, queued=queued, layers=layers
        )
        del src  # the load holds the pinned copy now: freed (and timed) when it is collected
        self.stats.loads += 1
        self.stats.bytes_moved += ad.nbytes
        self.stats.per_kind[job.kind] = self.stats.per_kind.get(job.kind, 0) + 1
        self._collect_loads()

    def _copy_layered(self, src: HostAdapter, slot: int, mode: str, which: str) -> list[Marker]:
        """The copy of a `layered` load: layer by layer (the layouts are layer-major), with a
        marker after each layer, so that a prefill can wait for each layer just before it
        runs it (`Forward.layer_waits`) and compute the early layers under the copy of the
        later ones."""
        sl = self.slots
        marks = []
        fits = mode == "flat" and sl.flat_fits(src.rank, src.targets)
        if mode == "flat" and not fits:
            staging = self._staging_buffer(which)
        if not sl.flat_fits(src.rank, src.targets):
            sl.pool[slot].zero_()  # rank padding and untargeted modules must read as zero
        for mods, lo, hi in _layers(src):
            if fits:
                sl.pool[slot, lo:hi].copy_(src.flat[lo:hi], non_blocking=True)
            elif mode == "flat":
                staging[lo:hi].copy_(src.flat[lo:hi], non_blocking=True)
                self._scatter(staging, slot, mods)
            else:
                sl.copy_modules(slot, mods)
            marks.append(self.clock.mark(which))
        return marks

    def _staging_buffer(self, which: str) -> torch.Tensor:
        staging = self._staging.get(which)
        if staging is None:
            staging = torch.empty(self.slots.slot_numel, device=self.device, dtype=self.dtype)
            self._staging[which] = staging
        return staging

    def _scatter(self, dev: torch.Tensor, slot: int, modules) -> None:
        """Device-side copies of modules from a flat staging buffer into their slot views."""
        sl = self.slots
        for seg, _, _ in modules:
            a_src = dev[seg.a_off : seg.b_off].view(seg.rank, seg.d_in)
            b_src = dev[seg.b_off : seg.b_off + seg.rank * seg.d_out].view(seg.rank, seg.d_out)
            sl.A(seg.layer, seg.module)[slot, : seg.rank].copy_(a_src)
            sl.Bt(seg.layer, seg.module)[slot, : seg.rank].copy_(b_src)

    def _copy(self, src: HostAdapter, slot: int, mode: str, which: str) -> None:
        sl = self.slots
        if mode == "flat":
            if sl.flat_fits(src.rank, src.targets):
                sl.pool[slot].copy_(src.flat, non_blocking=True)
                return
            dev = self._staging_buffer(which)[: src.flat.numel()]
            dev.copy_(src.flat, non_blocking=True)
            sl.pool[slot].zero_()
            self._scatter(dev, slot, src.modules)
            return
        if not sl.flat_fits(src.rank, src.targets):
            sl.pool[slot].zero_()  # rank padding and untargeted modules must read as zero
        sl.copy_modules(slot, src.modules)

    # ---- the unified arena (gpu.unified) --------------------------------------------------

    def _arena_place(self, ad: HostAdapter, which: str) -> int:
        """A run of arena pages for `ad` -> its first page. What the arena moves out of the
        way (KV pages, a packed adapter) is copied on the compute stream, after the forwards
        in flight that read it; the copy into the run waits for those moves and for any
        forward in flight that still used its pages when they were freed."""
        um = self.um
        assert um is not None
        start, n, moves = um.reserve(ad)
        waits = [m for p in range(start, start + n)
                 if (m := self._freed_at.pop(p, None)) is not None and not m.done()]  # fmt: skip
        if moves:
            moved = {m.owner for m in moves if m.owner is not None}
            with self.clock.stream("compute"):
                for ld in self.loads.values():  # a packed adapter still being copied in
                    if not ld.row_done and ld.job.adapter.name in moved:
                        self.clock.compute_waits_for(ld.end)
                um.apply(moves)
                waits.append(self.clock.mark("compute"))
            if moved:
                self._lora_epoch += 1  # a moved adapter: decode metas must be rebuilt
        if which == "load":
            for m in waits:
                self.clock.load_waits_for(m)
        return start

    def _copy_arena(self, src: HostAdapter, page: int, mode: str, which: str, layered: bool) -> list[Marker]:
        """The copies of a load into its arena run: one flat copy (the run holds the flat
        layout), or one per A/B^T tensor; a layered load layer by layer, marking each."""
        lora = self.um.lora
        if not layered:
            if mode == "flat":
                lora.copy_flat(src.flat, page)
            else:
                lora.copy_modules(page, src.modules)
            return []
        marks = []
        for mods, lo, hi in _layers(src):
            if mode == "flat":
                lora.copy_flat(src.flat, page, lo, hi)
            else:
                lora.copy_modules(page, mods)
            marks.append(self.clock.mark(which))
        return marks

    def _read_host(self, eff: ReadHost) -> float:
        """Reload an adapter into the host tier on this (the scheduler's) thread, as SGLang's
        scheduler process does; the GPU runs what is queued meanwhile."""
        for name in eff.drop:
            self.host.evict(name)
        if eff.adapter is not None:
            name = eff.adapter.name
            self.host.evict(name)  # the engine has it unregistered: read the file afresh
            t0 = self.clock.now()
            self.host.get(name)
            t1 = self.clock.now()
            self._rows.append(("disk", t0, t1, "reload", name))
            self.counters["disk_s"] += t1 - t0
        return self.clock.now()

    def _evict(self, adapters: tuple[str, ...]) -> None:
        """Free evicted adapters' pages; a copy into them waits for the compute queued now."""
        um = self.um
        if um is None:
            raise UNIFIED_NEEDS_ARENA
        with self.clock.stream("compute"):
            mark = self.clock.mark("compute")
        for name in adapters:
            start, n = um.arena.run_of(name)
            um.evict(name)
            for p in range(start, start + n):
                self._freed_at[p] = mark

    def _collect_loads(self) -> None:
        for lid, ld in self.loads.items():
            if not ld.row_done and ld.end.done():
                self._load_rows(ld)
                self.unpolled.append(lid)

    def _load_rows(self, ld: _Load) -> None:
        if ld.row_done:
            return
        job = ld.job
        if ld.keep is not None:
            # freeing the temporary pinned copies is scheduler time too (torch records a CUDA
            # event per freed tensor), as the SimPy driver's `release` row
            t_rel = self.clock.now()
            ld.keep = None
            self._rows.append(("host", t_rel, self.clock.now(), "release", job.adapter.name))
        ld.row_done = True
        t0, t1 = ld.start.time(), ld.end.time()
        self._rows.append(("pcie", t0, t1, job.kind, job.adapter.name))
        if job.stream == "compute":
            # like the SimPy driver: disk read and pinning of a compute-stream load block the
            # compute lane too (the CPU does them before it can issue the next forward)
            b0 = t0
            if ld.host_t0 is not None:
                b0 = max(ld.host_t0, ld.queued.time() if ld.queued is not None else ld.host_t0)
                b0 = min(b0, t0)
            self._rows.append(("compute", b0, t1, "blocking", job.adapter.name))
            self.counters["stall_s"] += t1 - b0

    def _loads_pending(self) -> bool:
        return any(not ld.row_done for ld in self.loads.values())

    # ---- forwards ------------------------------------------------------------------------

    def _prompt(self, rid: int) -> torch.Tensor:
        if rid not in self._prompts:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + rid)
            self._prompts[rid] = torch.randint(
                0, self.shape.vocab, (self.requests[rid].input_len,), generator=g
            )
        return self._prompts[rid]

    def _length(self, rid: int) -> int:
        """Tokens request `rid` will hold in the KV cache: its prompt and outputs."""
        r = self.requests[rid]
        return r.input_len + r.output_len

    def _tok_slots(self, items, new: list[int]) -> list[int]:
        """The slot each new token reads its adapter from (-1: base model); in the arena,
        the adapter's first page."""
        tok_slots: list[int] = []
        for it, n in zip(items, new, strict=True):
            s = it.slot if it.adapter is not None and it.rank > 0 else -1
            if self.resident is not None and it.adapter is not None:
                s = self.resident[it.adapter]
            elif self.um is not None and s >= 0:
                s = self.um.lora.first[it.adapter]
            tok_slots.extend([s] * n)
        return tok_slots

    def _order_after_loads(
        self, batch: Batch, layer_waits: tuple[int, ...] = (), waited: list | None = None
    ) -> Callable[[int], None] | None:
        """The compute stream must not read a slot whose load-stream copy is still running:
        it waits for the whole copy, or, for the loads in `layer_waits`, for each layer of it
        just before that layer (the returned hook, which the prefill calls per layer; it
        appends to `waited` a marker pair around each wait, whose gap is the GPU's stall)."""
        used = {it.slot for it in batch.items if it.adapter is not None}
        per_layer = []
        for lid, ld in self.loads.items():
            if not ld.row_done and ld.job.slot in used and ld.job.stream == "load":
                if lid in layer_waits and ld.layers:
                    per_layer.append(ld.layers)
                else:
                    self.clock.compute_waits_for(ld.end)
        if not per_layer:
            return None

        def before_layer(j: int) -> None:
            m0 = self.clock.mark("compute")
            for marks in per_layer:
                self.clock.compute_waits_for(marks[j])
            if waited is not None:
                waited.append((m0, self.clock.mark("compute")))

        return before_layer

    def _launch(self, eff: Forward) -> int:
        batch = eff.batch
        t = self._ticket
        self._ticket += 1
        waited: list[tuple[Marker, Marker]] = []
        before_layer = self._order_after_loads(batch, eff.layer_waits, waited)
        items = batch.items
        rows = [self.kv.row(it.rid, self._length(it.rid)) for it in items]
        dev = self.device
        rows_t = to_device(rows, dev)
        with self.clock.stream("compute"):
            launch = _Launch(batch.kind, self.clock.mark("compute"), waited=waited)
            self.launches[t] = launch
            if batch.kind == "prefill":
                new = [it.new_tokens for it in items]
                ctx = [it.context for it in items]
                toks = torch.cat(
                    [
                        self._prompt(it.rid)[c : c + n]
                        for it, c, n in zip(items, ctx, new, strict=True)
                    ]
                )
                inp = StepInput(to_device(toks, dev), rows, ctx, new)
                logits = self.prefiller.run(inp, self._tok_slots(items, new), before_layer=before_layer)
                done = [
                    i
                    for i, it in enumerate(items)
                    if it.context + it.new_tokens >= self.requests[it.rid].input_len
                ]
                if done:
                    idx = to_device(done, dev)
                    self.kv.last_tok[rows_t[idx]] = logits[idx].argmax(-1)
                launch.steps.append(self.clock.mark("compute"))
                self._release(items, 0)
            else:
                tok_slots = self._tok_slots(items, [1] * len(items))
                lb = None
                if self.decoder is not None:
                    self.decoder.prepare(rows, [it.context for it in items], tok_slots)
                else:
                    lb = self.slots.meta(tok_slots)
                launch.decode = _Decode(eff, items, rows, rows_t, lb, self._lora_epoch)
                self._decode_step(launch)
        if batch.kind == "decode":
            self._carry_on(launch, block=eff.wait)
        return t

    def _decode_step(self, la: _Launch) -> None:
        """Launch the next step of a decode run and mark its end."""
        d = la.decode
        assert d is not None
        if d.epoch != self._lora_epoch:  # an adapter of the arena moved: a fresh segment table
            j = len(la.steps)
            tok_slots = self._tok_slots(d.items, [1] * len(d.items))
            if self.decoder is not None:
                self.decoder.prepare(d.rows, [it.context + j for it in d.items], tok_slots)
            else:
                d.lb = self.slots.meta(tok_slots)
            d.epoch = self._lora_epoch
        with self.clock.stream("compute"):
            if self.decoder is not None:
                self.decoder.step()
            else:
                j = len(la.steps)
                ctx = [it.context + j for it in d.items]
                inp = StepInput(self.kv.last_tok[d.rows_t], d.rows, ctx, [1] * len(d.items), d.lb)
                self.kv.last_tok[d.rows_t] = self.model.forward(inp, self.kv).argmax(-1)
            la.steps.append(self.clock.mark("compute"))

    def _carry_on(self, la: _Launch, block: bool) -> None:
        """Launch a decode run's further steps while its last step has ended and the run should
        go on; with `block`, wait for each step, else launch at most one and return: a step
        launch-bound on the host (a tiny model) can end before the next look, and the caller
        (`_wait_until`) must see its `until` between steps, not after the whole run."""
        d = la.decode
        while d is not None:
            if len(la.steps) < max(1, d.eff.max_steps):
                m = la.steps[-1]
                if not m.done():
                    if not block:
                        return
                    m.wait()
                if not self._stop_decode(d.eff):
                    self._decode_step(la)
                    if not block:
                        return
                    continue
            la.decode = None
            self._release(d.items, len(la.steps) - 1)
            return

    def _stop_decode(self, eff: Forward) -> bool:
        """Between decode steps: has time reached `until`, or did a load-stream copy finish?"""
        if eff.until is not None and self.clock.now() >= eff.until:
            return True
        if eff.stop_on_load:
            return any(
                not ld.row_done and ld.job.stream == "load" and ld.end.done()
                for ld in self.loads.values()
            ) or bool(self.unpolled)
        return False

    def _release(self, items, last_step: int) -> None:
        """Free KV rows of requests whose last output token this forward produced. In the
        arena their pages may go to an adapter copied on the load stream, which must wait
        for this forward (still in flight): it is marked with them."""
        mark = None
        for it in items:
            r = self.requests[it.rid]
            if it.context + it.new_tokens + last_step >= r.input_len + r.output_len - 1:
                if self.um is not None:
                    if mark is None:
                        with self.clock.stream("compute"):
                            mark = self.clock.mark("compute")
                    for p in self.kv.pages_of(it.rid):
                        self._freed_at[p] = mark
                self.kv.release(it.rid)
                self._prompts.pop(it.rid, None)

    def _result(self, ticket: int) -> ForwardResult:
        la = self.launches[ticket]
        if la.result is None:
            self._carry_on(la, block=True)
            la.steps[-1].wait()
            start = la.start.time()
            ends = tuple(m.time() for m in la.steps)
            la.result = ForwardResult(start, ends[-1], ends if la.kind == "decode" else ())
            # a prefill's waits for copies layer by layer: GPU stall inside the forward
            self.counters["layer_wait_s"] += sum(b.time() - a.time() for a, b in la.waited)
            self._rows.append(("compute", start, ends[-1], la.kind, f"{la.kind} x{len(ends)}"))
        return la.result

    def _ran(self, la: _Launch) -> bool:
        """Has launch `la` finished? Carries a decode run on first (without waiting)."""
        if la.decode is not None:
            self._carry_on(la, block=False)
        return la.decode is None and la.steps[-1].done()

    def _collect_forwards(self) -> None:
        for t, la in self.launches.items():
            if la.result is None and self._ran(la):
                self._result(t)
                self.fwd_unpolled.append(t)

    def _forwards_pending(self) -> bool:
        return any(la.result is None for la in self.launches.values())

    def _wait_until(self, ticket: int, until: float) -> bool:
        """Spin (carrying a decode run on) until launch `ticket` is done, True, or the clock
        reaches `until`, False. It spins, as a blocking wait on a step does, because the next
        decode step is launched only once this loop sees the last one end: sleeping `poll_s`
        between looks (Linux adds its 50 us timer slack) left the GPU idle at every step
        boundary, 0.1-0.23 ms a 17-18 ms step more than `overlap`'s blocking waits (round 15,
        saturated traces on the H200), a cost the simulator does not have."""
        la = self.launches[ticket]
        while True:
            if la.result is not None or self._ran(la):
                return True
            if self.clock.now() >= until:
                return False

    # ---- idle ----------------------------------------------------------------------------

    def _idle(self, until: float | None) -> float:
        self._collect_loads()
        self._collect_forwards()
        if self.unpolled or self.fwd_unpolled:
            return self.clock.now()
        if until is None and not (self._loads_pending() or self._forwards_pending()):
            raise DeadlockError(
                f"idle at t={self.clock.now():.3f}s with nothing in flight and no arrivals to come"
            )
        while True:
            now = self.clock.now()
            if until is not None and now >= until:
                return now
            self._collect_loads()
            self._collect_forwards()
            if self.unpolled or self.fwd_unpolled:
                return self.clock.now()
            wait = self.poll_s if until is None else min(self.poll_s, max(0.0, until - now))
            time.sleep(wait)
