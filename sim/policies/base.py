"""The policy interface: the hooks the engine calls, and defaults that do nothing.

A policy decides three things and nothing else: whether a request's adapter can join the
batch being formed (and what to load for it), what to load ahead of need, and which adapter
to evict (via the pool's lru/fifo order). Time, streams and copies belong to the driver.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sim.core.model import RequestState
from sim.core.serving import ServingKnobs

if TYPE_CHECKING:
    from sim.core.engine import Engine
    from sim.core.scheduler import PrefillPlan

Key = str | None


def int_option(policy: str, name: str, v, lo: int) -> int:
    """A policy option that must be an integer >= lo (ValueError naming it otherwise)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"policy {policy!r}: option {name} must be an integer >= {lo}, got {v!r}")
    return v


def number_option(policy: str, name: str, v, lo: float, strict: bool = False) -> float:
    """A policy option that must be a finite number >= lo (> lo if strict)."""
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < lo or (strict and v == lo):
        rel = ">" if strict else ">="
        raise ValueError(f"policy {policy!r}: option {name} must be a number {rel} {lo}, got {v!r}")
    return float(v)


def bool_option(policy: str, name: str, v) -> bool:
    """A policy option that must be true or false (ValueError naming it otherwise)."""
    if not isinstance(v, bool):
        raise ValueError(f"policy {policy!r}: option {name} must be true or false, got {v!r}")
    return v


class Policy:
    name = "base"
    summary = ""  # one line for `lorasim policies`
    #: uses GPU slots beyond max_loras_per_batch (slora's prefetch slots)
    uses_prefetch_slots = False
    #: a finished async load can make a waiting request schedulable (overlap)
    load_completion_unblocks = False
    #: how many prefill forwards may be in flight at once (1 = no launching ahead)
    launch_ahead = 1
    #: wake the policy (`on_arrival`) at each arrival while a decode runs, not only at the
    #: next scheduling point, so it can start copies then (the scheduler's thread is free)
    loads_on_arrival = False
    #: a prefill whose adapters are still copying waits for them layer by layer on the GPU
    #: (the forward's layer j after the copies' layer j) instead of before it starts
    layer_pipelined = False

    def __init__(self, **options):
        if options:
            raise ValueError(f"policy {self.name!r} takes no options {sorted(options)}")

    def bind(self, engine: Engine) -> None:
        self.e = engine

    # -- capacity and host memory ------------------------------------------------------------
    def slot_capacity(self, serving: ServingKnobs) -> int:
        return serving.max_loras_per_batch + (
            serving.max_loras_prefetch if self.uses_prefetch_slots else 0
        )

    def memory_model(self, serving: ServingKnobs) -> str:
        """Where adapters live: serving.adapter_memory ("slots" or "unified", sim.core.memory)."""
        return serving.adapter_memory

    def host_mode(self, serving: ServingKnobs) -> str:
        """SGLang pins weights afresh for each blocking load; `auto` follows that."""
        return "pin_per_load" if serving.host_mode == "auto" else serving.host_mode

    # -- scan -----------------------------------------------------------------------------------
    def order(self, waiting: list[RequestState]) -> list[RequestState]:
        return waiting  # FCFS

    def is_hit(self, adapter: Key) -> bool:
        return self.e.pool.is_ready(adapter)

    def fits_batch(self, adapter: Key, batch_adapters: set[Key], extra: set[Key] = frozenset()) -> bool:
        """SGLang's validate_lora_batch: distinct adapters of running + batch (+ extra)
        must not exceed max_loras_per_batch, and, with pinned adapters, those not pinned must
        fit the slots the pinned ones leave. Unified memory has no such limit (only bytes)."""
        e = self.e
        if e.unified:
            return True
        s = e.sched.adapters_in_use() | batch_adapters
        if extra:
            s |= extra
        n = len(s) + (adapter not in s)
        if n > e.cfg.max_loras_per_batch:
            return False
        pinned = e.pinned
        if not pinned:
            return True
        in_batch = len(pinned & s) + (adapter in pinned and adapter not in s)
        return n - in_batch <= e.cfg.max_loras_per_batch - len(pinned)

    def admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        raise NotImplementedError

    # SGLang's `_can_schedule_lora_req` runs before the checks that stop the scan; only a policy
    # whose check has side effects (overlap's load starts) sees the difference, and only such a
    # policy is asked (`lora_check`); for the others the scan stops where it always did
    lora_check_effects = False

    def lora_check(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        """The LoRA check of a request the scan would stop at (full batch, token budget or KV;
        `serving.lora_check_first`): True stops the scan there, False skips the request and
        the scan goes on (with `serving.lora_refused: stop` the scan stops either way)."""
        return True

    # -- events -------------------------------------------------------------------------------
    def on_arrival(self, st: RequestState, now: float) -> None:
        pass

    def on_load_done(self, adapter: Key, now: float) -> None:
        pass

    def on_batch(self, plan: PrefillPlan, now: float) -> None:
        # in batch order, not set order: set order of strings changes with PYTHONHASHSEED
        for a in dict.fromkeys(st.adapter for st, _ in plan.items):
            self.e.pool.touch(a)

    def after_schedule(self, plan: PrefillPlan | None, now: float) -> None:
        pass

    def on_decode(self, now: float) -> None:
        """A decode run of every running request starts (blocking SGLang marks its adapters
        used here: see BlockingLRU)."""

    def on_evict(self, adapter: Key) -> None:
        pass

    def look_again_at(self, now: float) -> float | None:
        """A time before the next arrival at which the scheduler should look again (a decode
        run stops at the first step end after it), or None."""
        return None


class TracksPrefetch:
    """Mixin: counts prefetched adapters evicted before any batch used them (wasted copies).
    Put it before the Policy base; call `self.unused.add(a)` when a prefetch starts."""

    unused: set[Key]

    def on_batch(self, plan: PrefillPlan, now: float) -> None:
        super().on_batch(plan, now)  # type: ignore[misc]
        self.unused -= plan.adapters

    def on_evict(self, adapter: Key) -> None:
        if adapter in self.unused:
            self.unused.discard(adapter)
            self.e.counters["prefetch_wasted"] += 1  # type: ignore[attr-defined]
