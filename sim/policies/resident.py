"""Oracles: every adapter is always on the GPU and loads cost nothing.

`resident` also lets any number of adapters share a batch (no slot limit at all): the lower
bound every policy is measured against, but its gap to a policy includes the capacity effect
of the slot limit, which no loading policy at equal memory can recover.
`zero_load` keeps the batch rule every policy obeys (at most `max_loras_per_batch` distinct
adapters among running requests), so its gap to a policy is the cost of loading alone. It
is not a strict bound on single percentiles: batching anomalies can move them either way.
"""

from __future__ import annotations

from sim.core.model import RequestState
from sim.policies.base import Key, Policy


class ResidentOracle(Policy):
    name = "resident"
    summary = "oracle: all adapters on the GPU, no loads, no slot limit (lower bound)"
    uses_slots = False
    unbounded = True

    def slot_capacity(self, serving) -> int:
        return 1  # unused: nothing is ever placed

    def memory_model(self, serving) -> str:
        return "slots"  # adapters take no memory at all: serving.adapter_memory is moot

    def is_hit(self, adapter: Key) -> bool:
        return True

    def admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        return self.unbounded or self.fits_batch(st.adapter, batch_adapters)

    def on_batch(self, plan, now: float) -> None:
        pass


class ZeroLoadOracle(ResidentOracle):
    name = "zero_load"
    summary = "oracle: no load cost, same max_loras_per_batch rule (isolates loading cost)"
    unbounded = False
