"""`overlap`: SGLang's overlap loading (PR #15512, --enable-lora-overlap-loading).

Every load goes asynchronously onto one dedicated load stream (FIFO, one event per adapter,
several in flight). A request whose adapter is not loaded is skipped; the scan starts its
load if running + in-flight + it fit `max_loras_per_batch` and a victim exists (victims never
running or in flight). A finished load is seen only when the scheduler polls. Because the
CPU launches a prefill as soon as a load's event fires, each newly loaded adapter tends to
get its own prefill (the SGLang docs' worst case); `launch_ahead` bounds that queue.
Host copies are pinned once and kept (no pin-per-load cost).

`pipelined: true` is SGLang's newer loader (`lora_overlap_loader.py` at 13687c61, with
`lora_pipeline_sync.py`): `try_overlap_load_lora` admits a request once its adapter's load
has *started*, copies go layer by layer and the forward waits for each layer's copy
before that layer (the engine's layer waits, as `lookahead` uses them). The default is the
loader that skips a request until its adapter is loaded (a87a4dff).
"""

from __future__ import annotations

from sim.core.model import RequestState
from sim.core.serving import ServingKnobs
from sim.policies.base import Key, Policy, bool_option, int_option


class OverlapLoading(Policy):
    name = "overlap"
    summary = "every load async on one load stream; skip requests until their adapter is loaded (SGLang)"
    load_completion_unblocks = True
    lora_check_effects = True  # try_overlap_load_lora starts loads
    eviction = "lru"

    def __init__(self, launch_ahead: int | None = None, pipelined: bool = False, **options):
        super().__init__(**options)
        self.layer_pipelined = bool_option(self.name, "pipelined", pipelined)
        self._launch_ahead = (
            None if launch_ahead is None else int_option(self.name, "launch_ahead", launch_ahead, 1)
        )

    def bind(self, engine) -> None:
        super().bind(engine)
        self.launch_ahead = self._launch_ahead or engine.cfg.max_loras_per_batch

    def host_mode(self, serving: ServingKnobs) -> str:
        return "pinned" if serving.host_mode == "auto" else serving.host_mode

    def lora_check(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        """try_overlap_load_lora, as SGLang runs it before the scan's budget checks: a load may
        start for a request the scan then stops at or passes."""
        return self.admit(st, batch_adapters)

    def admit(self, st: RequestState, batch_adapters: set[Key]) -> bool:
        a, e = st.adapter, self.e
        if e.pool.is_ready(a):
            return self.fits_batch(a, batch_adapters)
        if e.pool.is_loading(a):
            return self.layer_pipelined and self.fits_batch(a, batch_adapters)
        # try_overlap_load_lora: running + in flight + new must fit the batch limit
        if self.fits_batch(a, set(), extra=e.pool.loading()):
            if a is None:  # the base model needs a slot but no copy: usable at once
                return self.fits_batch(a, batch_adapters) and e.new_load(
                    a, batch_adapters, stream="load", kind="overlap"
                )
            started = e.new_load(a, batch_adapters, stream="load", kind="overlap")
            return started and self.layer_pipelined and self.fits_batch(a, batch_adapters)
        return False
