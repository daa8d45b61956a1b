"""The built-in policies, which `registry` registers by name on first use.

A plain list, not self-registration: the registry imports this module, never the reverse,
so the policies' imports stay one-way.
"""

from sim.policies.base import Policy
from sim.policies.history import HistoryPrefetch
from sim.policies.idle_cache import IdleCache
from sim.policies.lookahead import LookaheadOverlap
from sim.policies.lru import BlockingFIFO, BlockingLRU
from sim.policies.overlap import OverlapLoading
from sim.policies.resident import ResidentOracle, ZeroLoadOracle
from sim.policies.slora import SLoRAPrefetch

BUILTINS: tuple[type[Policy], ...] = (
    BlockingLRU,
    BlockingFIFO,
    SLoRAPrefetch,
    OverlapLoading,
    HistoryPrefetch,
    ResidentOracle,
    LookaheadOverlap,
    ZeroLoadOracle,
    IdleCache,
)
