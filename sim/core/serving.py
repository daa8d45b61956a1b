"""The server's knobs as the core sees them: plain, frozen values, no schema.

The core (engine, scheduler) and the policies read these; `sim.config.ServingCfg` is the
validated user-facing schema (defaults, ranges, error messages) and converts to this with
`ServingCfg.knobs()`. Keeping the core free of the config layer keeps the imports one-way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

# knobs the runner derives from the model and the adapters, not set in a scenario file
DERIVED = ("kv_bytes_per_token", "slot_bytes")


@dataclass(frozen=True)
class ServingKnobs:
    """SGLang-like server knobs (meanings and defaults: `sim.config.ServingCfg`)."""

    max_loras_per_batch: int
    max_loras_prefetch: int
    max_loaded_loras: int | None
    max_running_requests: int
    max_prefill_tokens: int
    chunked_prefill_size: int
    kv_cache_tokens: int
    copy_mode: Literal["flat", "per_module"]
    host_mode: Literal["auto", "pinned", "pageable", "pin_per_load"]
    eviction: Literal["lru", "fifo"]
    lora_drain_wait_threshold: float = 0.0  # SGLang's LoRADrainer; 0 = off (its default)
    lora_check_first: bool = True  # SGLang's scan order (ServingCfg.lora_check_first)
    lora_refused: Literal["skip", "stop"] = "skip"  # after a failed LoRA check (ServingCfg.lora_refused)
    adapter_memory: Literal["slots", "unified"] = "slots"  # sim.core.memory
    host_reload: Literal["arrival", "load"] = "arrival"  # when a host-tier miss is read (sim.core.host)
    pinned_loras: int = 0  # the population's first N, never evicted (ServingCfg.pinned_loras)
    # unified only, filled from the model and the adapters by the runner (`sim.runner.serving_knobs`)
    kv_bytes_per_token: int = 0
    slot_bytes: int = 0

    @classmethod
    def of(cls, serving: Any) -> ServingKnobs:
        """These knobs, read by name from any object that has them (a validated config)."""
        if isinstance(serving, cls):
            return serving
        return cls(**{f.name: getattr(serving, f.name, f.default) for f in fields(cls)})
