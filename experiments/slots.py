"""Equal-GPU-memory slot splits (DESIGN §4): compare policies at the same adapter memory.

A policy that prefetches into extra slots (slora) must pay for them out of the same budget
a blocking policy spends on batch slots: slora 8 + 8 is compared with lru 16, not lru 8.
New policies extend `SLOT_RULES` (or call `register_slot_rule`); unknown ones get all slots
as batch slots, which is right for any policy that does not reserve prefetch slots.
"""

from __future__ import annotations

from collections.abc import Callable

# (adapter_slots, prefetch_share) -> (max_loras_per_batch, max_loras_prefetch)
SlotRule = Callable[[int, float], tuple[int, int]]


def batch_only(slots: int, share: float) -> tuple[int, int]:
    """Every slot is a batch slot (lru, fifo, overlap, history, resident)."""
    return slots, 0


def split_prefetch(slots: int, share: float) -> tuple[int, int]:
    """`share` of the slots become prefetch slots, the rest batch slots (at least one each)."""
    if slots < 2:
        raise ValueError(f"a prefetching policy needs adapter_slots >= 2, got {slots}")
    prefetch = min(max(round(slots * share), 1), slots - 1)
    return slots - prefetch, prefetch


SLOT_RULES: dict[str, SlotRule] = {"slora": split_prefetch}


def register_slot_rule(policy: str, rule: SlotRule | None = None, *, uses_prefetch: bool = True) -> None:
    """Declare how `policy` spends its adapter memory (default: it uses prefetch slots)."""
    SLOT_RULES[policy] = rule or (split_prefetch if uses_prefetch else batch_only)


def equal_memory_slots(policy: str, adapter_slots: int, prefetch_share: float) -> tuple[int, int]:
    """(max_loras_per_batch, max_loras_prefetch) for `policy` at `adapter_slots` GPU slots."""
    if adapter_slots < 1:
        raise ValueError(f"adapter_slots must be >= 1, got {adapter_slots}")
    if not 0.0 <= prefetch_share < 1.0:
        raise ValueError(f"prefetch_share must be in [0, 1), got {prefetch_share}")
    return SLOT_RULES.get(policy, batch_only)(adapter_slots, prefetch_share)
