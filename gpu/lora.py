"""GPU slot pool and batched multi-adapter LoRA (one grouped op per projection, DESIGN §8).

Memory: one buffer `pool[slots, slot_numel]`; slot s holds, per layer and target module,
A `[max_rank, in]` then B^T `[max_rank, out]` (gpu.adapters' flat layout at max rank, zero
padded). `A(layer, m)` is the strided view `[slots, max_rank, in]` across slots, `Bt(layer,
m)` `[slots, max_rank, out]`. An adapter with the slot's rank and modules is therefore ONE
contiguous copy (`pool[s]`); others are copied per module into the prefix of each region.

Compute (`apply`): tokens of the packed batch are grouped into per-adapter segments padded
to the longest, then `bmm(x_seg, A^T)` and `bmm(h, B^T)` over all used adapters at once and
`index_add_` back: a constant number of kernels per projection whatever the number of
adapters (a Python loop over adapters is launch-bound: ~0.4 ms per projection on an H200).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gpu.adapters import Segment, flat_layout, ordered_targets
from gpu.staging import to_device
from sim.core.model import ALL_TARGETS, ModelShape


@dataclass
class LoraBatch:
    """Per-forward index tensors, shared by every layer and projection (built once, on host)."""

    slots: torch.Tensor  # [n] slot of each used adapter
    gather: torch.Tensor  # [n*L] token row feeding each padded segment row (0 for padding)
    tok_scale: torch.Tensor  # [n*L, 1] adapter scaling for real rows, 0 for padding
    n: int
    seg_len: int
    all_slots: bool  # the used slots are exactly 0..S-1 in order: no weight gather needed


@dataclass
class DenseLoraBatch:
    """Fixed-shape LoRA layout for captured prefill graphs (gpu.prefill_graphs): every token
    runs through the n used adapters' A at once (`[T, n*R]`, one GEMM) and a per-token mask
    keeps only its own adapter's block before B. The segment layout pads each adapter to the
    longest segment, so a fixed-shape prefill would pay n x T rows of gathered activations;
    here extra adapters cost n*R more columns of a skinny GEMM instead."""

    slots: torch.Tensor  # [n] slot of each used adapter (padding repeats a used one)
    mask: torch.Tensor  # [T, n, 1] token t's scale on its own adapter's block, 0 elsewhere
    n: int


class LoraSlots:
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
        self.scaling = [0.0] * n_slots  # host copy; folded into the per-token scale
        self.owner: list[str | None] = [None] * n_slots
        self._views = {k: self._make_views(s) for k, s in self.layout.items()}

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

    def has(self, module: str) -> bool:
        return module in self.targets

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

    # ---- batched compute -----------------------------------------------------------------

    def segments(
        self, tok_slots: list[int], n_min: int = 0, len_min: int = 0
    ) -> tuple[list[int], list[int], list[float], int]:
        """Host side of the segment layout; tok_slots[t] is token t's slot (-1: base model).
        -> (slot of each segment, token row of each segment row, its scale, rows a segment),
        at least `n_min` segments of at least `len_min` rows (fixed-size buffers of
        gpu.decode_graphs): padding segments repeat the first slot, padding rows read token 0
        with scale 0. No segments when no token uses an adapter."""
        groups: dict[int, list[int]] = {}
        for t, s in enumerate(tok_slots):
            if s >= 0:
                groups.setdefault(s, []).append(t)
        if not groups:
            return [], [], [], 0
        used = sorted(groups)
        n = max(len(used), n_min)
        seg_len = max(len_min, *(len(v) for v in groups.values()))
        gather = [0] * (n * seg_len)
        scale = [0.0] * (n * seg_len)
        for i, s in enumerate(used):
            for j, t in enumerate(groups[s]):
                gather[i * seg_len + j] = t
                scale[i * seg_len + j] = self.scaling[s]
        return used + [used[0]] * (n - len(used)), gather, scale, seg_len

    def batch(self, tok_slots: list[int]) -> LoraBatch | None:
        """Segment layout for a packed batch (`segments`) on the device. Returns None when
        no token uses an adapter (the LoRA ops are skipped entirely)."""
        used, gather, scale, seg_len = self.segments(tok_slots)
        if not used:
            return None
        dev = self.device
        return LoraBatch(
            slots=to_device(used, dev),
            gather=to_device(gather, dev),
            tok_scale=to_device(scale, dev, self.dtype).unsqueeze(1),
            n=len(used),
            seg_len=seg_len,
            all_slots=used == list(range(self.n_slots)),
        )

    def dense(
        self, tok_slots: list[int], n_min: int = 0, t_min: int = 0
    ) -> tuple[list[int], torch.Tensor]:
        """Host side of DenseLoraBatch: (slot of each of at least `n_min` blocks, a CPU
        tensor [rows, blocks] of each token's scale on each block, at least `t_min` rows).
        Padding tokens and base-model tokens (-1) have an all-zero row; padding blocks
        repeat the first used slot. Built with tensor ops: a long prefill has 10^4-10^5 cells."""
        ts = torch.tensor(tok_slots, dtype=torch.long)
        real = ts >= 0
        used = sorted(set(ts[real].tolist()))
        n = max(len(used), n_min, 1)
        mask = torch.zeros(max(len(tok_slots), t_min), n)
        if used:
            col = torch.zeros(max(used) + 1, dtype=torch.long)
            col[used] = torch.arange(len(used))
            scale = torch.tensor(self.scaling, dtype=torch.float32)
            rows = real.nonzero().squeeze(1)
            mask[rows, col[ts[rows]]] = scale[ts[rows]]
        first = used[0] if used else 0
        return used + [first] * (n - len(used)), mask

    def dense_batch(self, tok_slots: list[int]) -> DenseLoraBatch | None:
        """`dense` on the device, unpadded (an eager forward). None when no token uses an
        adapter."""
        if all(s < 0 for s in tok_slots):
            return None
        slots, mask = self.dense(tok_slots)
        return DenseLoraBatch(
            slots=to_device(slots, self.device),
            mask=to_device(mask, self.device, self.dtype).unsqueeze(2),
            n=len(slots),
        )

    def apply_dense(
        self, y: torch.Tensor, x: torch.Tensor, layer: int, module: str, db: DenseLoraBatch
    ) -> torch.Tensor:
        """As `apply`, in the DenseLoraBatch layout: y += ((x A_used^T) * mask) B_used^T."""
        a = self.A(layer, module).index_select(0, db.slots)  # [n, R, in], contiguous
        bt = self.Bt(layer, module).index_select(0, db.slots)  # [n, R, out]
        n, r = db.n, a.shape[1]
        h = x @ a.view(n * r, -1).t()  # [T, n*R]
        h = (h.view(-1, n, r) * db.mask).view(-1, n * r)
        return y.addmm_(h, bt.view(n * r, -1))

    def shrink_input(self, x: torch.Tensor, lb: LoraBatch) -> torch.Tensor:
        """Padded segments of the input, scaled per adapter: [n, L, in]. Shared by every
        projection reading the same x (q/k/v, gate/up): one gather instead of three."""
        xs = x.index_select(0, lb.gather) * lb.tok_scale
        return xs.view(lb.n, lb.seg_len, x.shape[-1])

    def apply(
        self, y: torch.Tensor, xs: torch.Tensor, layer: int, module: str, lb: LoraBatch
    ) -> torch.Tensor:
        """y[t] += scale * (x[t] A_s^T) B_s^T for every token t of adapter slot s, in place."""
        a, bt = self.A(layer, module), self.Bt(layer, module)
        if not lb.all_slots:
            a, bt = a.index_select(0, lb.slots), bt.index_select(0, lb.slots)
        h = torch.bmm(xs, a.transpose(1, 2))  # [n, L, R]
        out = torch.bmm(h, bt)  # [n, L, out]
        # padding rows are exactly zero (scale 0), so adding them to token 0 changes nothing
        return y.index_add_(0, lb.gather, out.view(-1, out.shape[-1]))


def reference_lora(
    x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float
) -> torch.Tensor:
    """Per-request LoRA delta in PEFT form (A [r, in], B [out, r]): what `apply` must equal."""
    return scaling * (x @ a.t()) @ b.t()
