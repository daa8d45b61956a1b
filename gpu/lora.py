"""GPU slot pool and batched multi-adapter LoRA (SGMV: two launches per fused projection).

Memory: one buffer `pool[slots, slot_numel]`; slot s holds, per layer and target module,
A `[max_rank, in]` then B^T `[max_rank, out]` (gpu.adapters' flat layout at max rank, zero
padded). `A(layer, m)` is the strided view `[slots, max_rank, in]` across slots, `Bt(layer,
m)` `[slots, max_rank, out]`. An adapter with the slot's rank and modules is therefore ONE
contiguous copy (`pool[s]`); others are copied per module into the prefix of each region.

Compute (`apply`): gpu.kernels' SGMV shrink and expand read each adapter's A and B^T in
place from its slot, over the batch's per-adapter token segments (`meta`, built once per
batch), for a whole fused projection (q|k|v, gate|up) in one launch each: no padding to the
longest segment, no gathered weights, no loop over adapters (S-LoRA / Punica, SGLang's
Triton LoRA backend). Ranks below the slots' max rank only read their own rows.
`project` runs a projection's base matmul and its LoRA; on a GPU part of the LoRA runs on a
side stream concurrently with the base matmul (a fork/join that CUDA-graph capture keeps).
`side` says which part: "shrink" (it only needs x; the expand adds into the matmul's output
on the step's critical path), "lora" (shrink and expand into a delta buffer that the
projection's consumer adds as it reads the output: RoPE, the norm, SiLU*mul; `project_pending`
hands it over. No LoRA launch is left on the critical path, only the join) or "none" (both
in line). The device's config table (`lora_side`) picks it.
"""

from __future__ import annotations

import torch

from gpu.adapters import Segment, flat_layout, ordered_targets
from gpu.kernels import FUSED, LoraMeta, LoraSlices, lora_apply, lora_expand, lora_shrink
from gpu.kernels._common import device_name_of
from gpu.kernels.configs import get_config
from sim.core.model import ALL_TARGETS, ModelShape

SIDE_PARTS = ("none", "shrink", "lora")


def side_part(device: torch.device) -> tuple[str, int]:
    """(part, max_rows) of the device's `lora_side` config: which part of each projection's
    LoRA the side stream runs, and up to how many tokens "lora" applies. A delta is as large
    as the projection's output, so zeroing it and reading it back costs a prefill what the
    expand's latency saves a decode step (256, every decode bucket, is a choice, not a
    measured crossover). A part the table does not know is a one-line error."""
    cfg = get_config("lora_side", device_name_of(device))
    if cfg.get("part") not in SIDE_PARTS:
        raise SystemExit(f"kernel configs: lora_side part must be one of {', '.join(SIDE_PARTS)}, "
                         f"got {cfg.get('part')!r}")
    return cfg["part"], int(cfg.get("max_rows", 256))


class SgmvLora:
    """Batched LoRA over adapters held in `pool` rows: the segment table (`meta`) and the two
    SGMV launches of each fused projection (`project`, `apply`), shared by the slot pool and
    the unified arena (gpu.unified). A subclass sets `pool` [rows, row_numel], `layout`,
    `ranks` and `scaling` (per pool row an adapter starts at), `n_slots` (most adapters a
    batch can hold), `max_rank`, and `tight` (offsets per unit of rank: adapters laid out at
    their own rank)."""

    shape: ModelShape
    targets: tuple[str, ...]
    device: torch.device
    pool: torch.Tensor
    layout: dict
    ranks: list[int]
    scaling: list[float]
    n_slots: int
    max_rank: int
    tight: bool = False

    def _init_compute(self) -> None:
        self._slices = [
            {f: sl for f in FUSED if (sl := LoraSlices.of(self, layer, f)) is not None}
            for layer in range(self.shape.layers)
        ]
        # what `project` runs on its side stream: "shrink", "lora" or "none" (module docstring)
        cuda = self.device.type == "cuda"
        self.side_stream = torch.cuda.Stream(self.device) if cuda else None
        part, self.side_max_rows = side_part(self.device)
        self.side: str = part if cuda else "none"

    def has(self, module: str) -> bool:
        return module in self.targets

    def meta(
        self,
        tok_slots: list[int],
        *,
        max_tokens: int | None = None,
        max_segments: int | None = None,
        max_len: int | None = None,
    ) -> LoraMeta | None:
        """The SGMV segment table of a packed batch (tok_slots[t]: the pool row token t's
        adapter starts at, -1: base model), on the device; capacities fixed for a CUDA-graph
        bucket when given. None when no token uses an adapter and no capacity is asked for
        (the LoRA ops are skipped)."""
        if max_tokens is None and all(s < 0 for s in tok_slots):
            return None
        return LoraMeta.build(
            tok_slots, self.ranks, self.scaling, self.device,
            max_tokens=max_tokens, max_segments=max_segments, max_len=max_len,
        )  # fmt: skip

    def project(
        self, x: torch.Tensor, w: torch.Tensor, layer: int, fused: str, meta: LoraMeta
    ) -> torch.Tensor:
        """x @ w.t() plus this fused projection's LoRA (`apply`), the LoRA's delta added."""
        y, d = self.project_pending(x, w, layer, fused, meta)
        return y if d is None else y.add_(d)

    def project_pending(
        self, x: torch.Tensor, w: torch.Tensor, layer: int, fused: str, meta: LoraMeta
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(y, d): x @ w.t() plus this fused projection's LoRA is y + d, with the `side` part
        of the LoRA on `side_stream` while the base matmul runs. d is the LoRA's delta where
        the side stream computed it whole ("lora"; the caller's next op adds it, no launch of
        its own), else None (the LoRA is in y). h and d are allocated on the side stream and
        freed after their last use on this one: the side stream's next work is queued behind
        a wait on this stream, so reusing their memory cannot overtake that use."""
        sl = self._slices[layer].get(fused)
        side = self.side_stream
        if sl is None or side is None or self.side == "none" or not x.is_cuda:
            return self.apply(x @ w.t(), x, layer, fused, meta), None
        whole = self.side == "lora" and x.shape[0] <= self.side_max_rows
        main = torch.cuda.current_stream(x.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            h = lora_shrink(x, self.pool, sl.a_offsets, self.max_rank, meta, self.tight)
            if whole:
                d = torch.zeros(x.shape[0], w.shape[0], device=x.device, dtype=x.dtype)
                self._expand(h, sl, d, meta)
        y = x @ w.t()
        main.wait_stream(side)
        if whole:
            return y, d
        return self._expand(h, sl, y, meta), None

    def _expand(self, h: torch.Tensor, sl: LoraSlices, y: torch.Tensor, meta: LoraMeta) -> torch.Tensor:
        return lora_expand(
            h, self.pool, sl.bt_offsets, sl.widths, y, meta, self.max_rank, sl.out_offsets, self.tight
        )

    def apply(
        self, y: torch.Tensor, x: torch.Tensor, layer: int, fused: str, meta: LoraMeta
    ) -> torch.Tensor:
        """y[t] += scale * (x[t] A_s^T) B_s^T on the columns of each module of the fused
        projection `fused` ("qkv", "gate_up", "o", "down") that the pool holds, for every token
        t of adapter s, in place: two launches whatever the number of adapters."""
        sl = self._slices[layer].get(fused)
        if sl is None:
            return y
        return lora_apply(y, x, self.pool, sl, self.max_rank, meta, self.tight)


class LoraSlots(SgmvLora):
    """Stacked, rank-padded adapter buffers for `n_slots` GPU slots."""

    def __init__(
        self,
        shape: ModelShape,
        n_slots: int,
        max_rank: int,
        targets,
        device: torch.device | str,
        dtype: torch.dtype,
    ):
        self.shape = shape
        self.n_slots = n_slots
        self.max_rank = max_rank
        self.targets = ordered_targets(targets)
        self.device = torch.device(device)
        self.dtype = dtype
        segs, self.slot_numel = flat_layout(shape, max_rank, self.targets)
        self.layout: dict[tuple[int, str], Segment] = {(s.layer, s.module): s for s in segs}
        self.pool = torch.zeros(n_slots, self.slot_numel, device=self.device, dtype=dtype)
        self.scaling = [0.0] * n_slots  # host copies: each slot's adapter scaling and rank
        self.ranks = [max_rank] * n_slots  # (ranks below max_rank skip the zero padding)
        self.owner: list[str | None] = [None] * n_slots
        self._views = {k: self._make_views(s) for k, s in self.layout.items()}
        self._init_compute()

    @classmethod
    def random(
        cls, shape: ModelShape, n_slots: int, rank: int, device: torch.device | str, dtype: torch.dtype
    ) -> LoraSlots:
        """Every slot filled with small random all-module weights at scaling 1: what timing
        (calibration, benchmarks, diagnostics) needs; the values do not change the cost."""
        slots = cls(shape, n_slots, rank, ALL_TARGETS, device, dtype)
        slots.pool.normal_(0, 0.01)
        slots.scaling = [1.0] * n_slots
        return slots

    def _make_views(self, s: Segment) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.pool[:, s.a_off : s.b_off].view(self.n_slots, s.rank, s.d_in)
        b = self.pool[:, s.b_off : s.b_off + s.rank * s.d_out].view(self.n_slots, s.rank, s.d_out)
        return a, b

    @property
    def slot_bytes(self) -> int:
        return self.slot_numel * self.pool.element_size()

    def A(self, layer: int, module: str) -> torch.Tensor:
        return self._views[(layer, module)][0]

    def Bt(self, layer: int, module: str) -> torch.Tensor:
        return self._views[(layer, module)][1]

    def copy_modules(self, slot: int, modules) -> None:
        """Copy an adapter's (segment, A, B^T) host tensors into `slot`, one asynchronous copy
        per tensor, as a per-module load does (SGLang's). The driver and calibration's issue
        time both run this loop, so the profile prices the host time the driver spends."""
        views = self._views
        for seg, a, bt in modules:
            va, vb = views[(seg.layer, seg.module)]
            va[slot, : seg.rank].copy_(a, non_blocking=True)
            vb[slot, : seg.rank].copy_(bt, non_blocking=True)

    def flat_fits(self, rank: int, targets) -> bool:
        """True if an adapter's flat buffer is laid out exactly like a slot (one copy)."""
        return rank == self.max_rank and ordered_targets(targets) == self.targets

    def check(self, rank: int, targets) -> None:
        if rank > self.max_rank:
            raise ValueError(f"adapter rank {rank} exceeds the slots' max rank {self.max_rank}")
        extra = set(targets) - set(self.targets)
        if extra:
            raise ValueError(
                f"adapter targets {sorted(extra)} have no slot buffers ({self.targets})"
            )


def reference_lora(
    x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float
) -> torch.Tensor:
    """Per-request LoRA delta in PEFT form (A [r, in], B [out, r]): what `apply` must equal."""
    return scaling * (x @ a.t()) @ b.t()
