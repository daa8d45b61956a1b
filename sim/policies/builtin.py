"""Registers the built-in policies by name."""

from sim.policies.history import HistoryPrefetch
from sim.policies.lookahead import LookaheadOverlap
from sim.policies.lru import BlockingFIFO, BlockingLRU
from sim.policies.overlap import OverlapLoading
from sim.policies.registry import register
from sim.policies.resident import ResidentOracle, ZeroLoadOracle
from sim.policies.slora import SLoRAPrefetch

for _cls in (
    BlockingLRU,
    BlockingFIFO,
    SLoRAPrefetch,
    OverlapLoading,
    HistoryPrefetch,
    ResidentOracle,
    LookaheadOverlap,
    ZeroLoadOracle,
):
    register(_cls.name)(_cls)
