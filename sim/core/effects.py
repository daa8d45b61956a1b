"""Effects: the only way the serving core touches time, copies and compute.

The engine is a generator that yields these objects; a driver executes each one and sends
the result back. The SimPy driver answers on simulated time, the CUDA driver for real.
Policies and the scheduler never read a clock or a stream directly, which is what makes
both drivers run exactly the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from sim.core.model import AdapterSpec

Stream = Literal["compute", "load"]
CopyMode = Literal["flat", "per_module"]
HostMode = Literal["pinned", "pageable", "pin_per_load"]
LoadKind = Literal["blocking", "prefetch", "overlap"]


@dataclass(frozen=True)
class LoadJob:
    """Copy one adapter host->device into a GPU slot.

    stream "compute": the copy runs on the compute stream (blocks forwards queued after it);
    stream "load": a dedicated load stream, FIFO, concurrent with compute.
    from_disk: the adapter is not in the host tier; read it from disk first.
    host_evicted: adapter dropped from the host tier to make room (driver frees it).
    layered: a forward may wait for this copy layer by layer (`Forward.layer_waits`): the
    driver moves it layer by layer, in layer order, and marks where each layer ends.
    """

    lid: int
    adapter: AdapterSpec
    slot: int
    stream: Stream
    kind: LoadKind
    copy_mode: CopyMode = "per_module"
    host_mode: HostMode = "pinned"
    from_disk: bool = False
    evicted: str | None = None  # adapter previously in the slot (GPU side)
    host_evicted: str | None = None
    layered: bool = False

    @property
    def n_copies(self) -> int:
        return self.adapter.n_tensors if self.copy_mode == "per_module" else 1


class BatchItem(NamedTuple):
    """One request's share of a forward: `new_tokens` on top of `context` cached tokens.
    A named tuple: the engine builds one per running request per decode forward, and a
    frozen dataclass costs several times as much to make."""

    rid: int
    adapter: str | None
    slot: int  # GPU slot of its adapter (-1 for the base model)
    rank: int  # adapter rank (0 for the base model)
    new_tokens: int
    context: int


@dataclass(frozen=True)
class Batch:
    kind: Literal["prefill", "decode"]
    items: tuple[BatchItem, ...]

    @property
    def tokens(self) -> int:
        return sum(i.new_tokens for i in self.items)

    @property
    def adapters(self) -> frozenset[str | None]:
        return frozenset(i.adapter for i in self.items)


@dataclass(frozen=True)
class ForwardResult:
    """When the forward ran. A decode forward may cover several steps (fast-forward):
    `step_ends[j]` is when step j finished; every running request got one token per step."""

    start: float
    end: float
    step_ends: tuple[float, ...] = ()


# ---- effects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Now:
    """-> float: the driver's current time (seconds from trace start)."""


@dataclass(frozen=True)
class StartLoad:
    """-> None. Enqueue `job` on its stream; returns at once for the load stream.
    On the compute stream the copy is ordered before any later Forward."""

    job: LoadJob


@dataclass(frozen=True)
class WaitLoad:
    """-> float: block until load `lid` has finished; returns the finish time."""

    lid: int


@dataclass(frozen=True)
class PollLoads:
    """-> tuple[int, ...]: load ids finished since the last poll (iteration granularity,
    as SGLang's overlap loader sees them via event.query())."""


@dataclass(frozen=True)
class Forward:
    """Run a batch on the compute stream.

    wait=True -> ForwardResult when it is done. wait=False -> int ticket at once (the CPU
    launches ahead of the GPU); redeem it with WaitForward.
    Decode only: run up to `max_steps` steps, stopping early once time reaches `until` or,
    with `stop_on_load`, once any load-stream copy finishes (the scheduler must look again).
    Prefill only: `layer_waits` are load-stream copies still running that the forward waits
    for layer by layer (a copy moves its adapter's layers in order, and layer j of the forward
    starts once layer j of each has arrived), so the copy overlaps the forward instead of
    preceding it.
    """

    batch: Batch
    max_steps: int = 1
    until: float | None = None
    stop_on_load: bool = False
    wait: bool = True
    layer_waits: tuple[int, ...] = ()


@dataclass(frozen=True)
class WaitForward:
    """-> ForwardResult of a Forward launched with wait=False.

    With `until`, return None instead if time reaches `until` first (the forward goes on):
    the scheduler's thread is free while the GPU decodes, and can act on an arrival then."""

    ticket: int
    until: float | None = None


@dataclass(frozen=True)
class PollForwards:
    """-> tuple[int, ...]: tickets of forwards launched with wait=False that have finished
    and were not yet redeemed with WaitForward (which then returns at once)."""


@dataclass(frozen=True)
class Idle:
    """-> float now. Sleep until `until`, or until any load or launched forward finishes,
    whichever is first. until=None with nothing in flight is a deadlock (driver raises)."""

    until: float | None = None


@dataclass(frozen=True)
class Evict:
    """-> None, at once. Unified adapter memory only (sim.core.memory): free these adapters'
    pages, whose bytes go to the KV cache or to the copies that follow. Issued before the
    StartLoad or Forward that reuses them; never an adapter in use, in flight or loaded for
    the batch. (With slots, a copy's `LoadJob.evicted` says which adapter its slot held.)"""

    adapters: tuple[str, ...]


@dataclass(frozen=True)
class ReadHost:
    """-> float: when done. Read `adapter` from disk into the host tier on the scheduler's
    thread, first freeing the host copies of `drop` (`serving.host_reload: arrival`, as SGLang
    reloads an evicted adapter when a request names it: its scheduler process reads the file
    between iterations and launches nothing meanwhile). `adapter` None: only the drop.
    `pinned`: the host tier keeps its copies pinned (`host_mode` "pinned"): pin it once read."""

    adapter: AdapterSpec | None
    drop: tuple[str, ...] = ()
    pinned: bool = False


Effect = Now | StartLoad | WaitLoad | PollLoads | Forward | WaitForward | PollForwards | Idle | Evict | ReadHost


@dataclass
class LoadStats:
    """What the drivers report back about copies, for metrics (filled by drivers)."""

    bytes_moved: int = 0
    loads: int = 0
    per_kind: dict[str, int] = field(default_factory=dict)
