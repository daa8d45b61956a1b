"""`resident`: the oracle. Every adapter is always on the GPU, loads cost nothing, and any
number of adapters may share a batch. The lower bound every policy is measured against."""

from __future__ import annotations

from sim.core.model import RequestState
from sim.policies.base import Key, Policy


class ResidentOracle(Policy):
    name = "resident"

    def slot_capacity(self, serving) -> int:
        return 1  # unused: nothing is ever placed

    def is_hit(self, adapter: Key) -> bool:
        return True

    def admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        return True

    def on_batch(self, plan, now: float) -> None:
        pass
