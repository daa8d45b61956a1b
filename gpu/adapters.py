"""PEFT adapter files (write synthetic ones, read real ones) and the host (CPU) tier.

The host tier is where a load starts: SGLang keeps `max_loaded_loras` adapters in CPU
memory (LRU, disk reload on a miss); overlap keeps them pinned once, the blocking path pins
a temporary copy per load. Each adapter is held as ONE flat contiguous buffer (so a flat
load is a single copy) with per-module tensors as views into it (so a per-module load is
hundreds of small copies from the same memory).

Flat layout (shared with gpu.lora's slot layout): for each layer, for each targeted module in
ALL_TARGETS order: A `[r, in]` then B transposed `[r, out]`. Storing B transposed makes a
rank-r adapter a prefix of a max-rank slot region per module, and one copy suffices when the
adapter has the slot's rank and modules.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sim.core.model import ALL_TARGETS, AdapterSpec, ModelShape

if TYPE_CHECKING:
    import torch

PEFT_KEY = "base_model.model.model.layers.{layer}.{group}.{module}.lora_{ab}.weight"


def module_group(module: str) -> str:
    return "self_attn" if module in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"


def peft_key(layer: int, module: str, ab: str) -> str:
    return PEFT_KEY.format(layer=layer, group=module_group(module), module=module, ab=ab)


def ordered_targets(targets) -> tuple[str, ...]:
    """Targets in ALL_TARGETS order: the order of every flat layout."""
    s = set(targets)
    return tuple(t for t in ALL_TARGETS if t in s)


@dataclass(frozen=True)
class Segment:
    """Where one module's A (then B^T) of one layer sits in a flat buffer (element offsets)."""

    layer: int
    module: str
    a_off: int
    b_off: int
    rank: int
    d_in: int
    d_out: int


def flat_layout(shape: ModelShape, rank: int, targets) -> tuple[list[Segment], int]:
    """Segments of the flat layout and its total element count."""
    segs: list[Segment] = []
    off = 0
    for layer in range(shape.layers):
        for m in ordered_targets(targets):
            d_in, d_out = shape.proj_dims(m)
            segs.append(Segment(layer, m, off, off + rank * d_in, rank, d_in, d_out))
            off += rank * (d_in + d_out)
    return segs, off


# ---- PEFT files ------------------------------------------------------------------------------


def write_peft_adapter(
    path: str | Path,
    shape: ModelShape,
    rank: int,
    targets=ALL_TARGETS,
    *,
    alpha: float | None = None,
    seed: int = 0,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a synthetic PEFT adapter folder (adapter_config.json + adapter_model.safetensors).

    Weights are small random values (B is non-zero, unlike a fresh PEFT init) so that the
    adapter visibly changes the model's output in tests.
    """
    import torch
    from safetensors.torch import save_file

    dtype = dtype or (torch.bfloat16 if shape.dtype_bytes == 2 else torch.float32)
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    for layer in range(shape.layers):
        for m in ordered_targets(targets):
            d_in, d_out = shape.proj_dims(m)
            a = torch.randn(rank, d_in, generator=g) / d_in**0.5
            b = torch.randn(d_out, rank, generator=g) / rank**0.5
            tensors[peft_key(layer, m, "A")] = a.to(dtype).contiguous()
            tensors[peft_key(layer, m, "B")] = b.to(dtype).contiguous()
    save_file(tensors, str(p / "adapter_model.safetensors"))
    cfg = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": rank,
        "lora_alpha": alpha if alpha is not None else 2 * rank,
        "target_modules": list(ordered_targets(targets)),
        "lora_dropout": 0.0,
        "bias": "none",
        "base_model_name_or_path": shape.name,
    }
    (p / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
    return p


@dataclass
class PeftAdapter:
    """A PEFT adapter read from disk: config plus module tensors in PEFT form (B is [out, r])."""

    rank: int
    alpha: float
    targets: tuple[str, ...]
    tensors: dict[str, torch.Tensor]

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


def read_peft_adapter(path: str | Path) -> PeftAdapter:
    """Read a PEFT folder (synthetic or real). Keys follow PEFT naming."""
    from safetensors.torch import load_file

    p = Path(path)
    cfg = json.loads((p / "adapter_config.json").read_text())
    st = p / "adapter_model.safetensors"
    if not st.exists():
        raise FileNotFoundError(f"{p}: no adapter_model.safetensors")
    tensors = load_file(str(st))
    targets = cfg.get("target_modules") or []
    if isinstance(targets, str):  # PEFT allows a regex; take the modules present in the file
        targets = [m for m in ALL_TARGETS if any(f".{m}." in k for k in tensors)]
    return PeftAdapter(
        rank=int(cfg["r"]),
        alpha=float(cfg.get("lora_alpha", cfg["r"])),
        targets=ordered_targets(targets),
        tensors=tensors,
    )


def adapter_spec(name: str, path: str | Path, shape: ModelShape) -> AdapterSpec:
    """AdapterSpec of a PEFT folder (sizes from the model shape, as the simulator counts them)."""
    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    spec = AdapterSpec.from_shape(
        name, int(cfg["r"]), ordered_targets(cfg["target_modules"]), shape
    )
    return AdapterSpec(spec.name, spec.rank, spec.targets, spec.nbytes, spec.n_tensors, str(path))


def to_flat(ad: PeftAdapter, shape: ModelShape, dtype: torch.dtype) -> torch.Tensor:
    """One contiguous buffer in the flat layout (B stored transposed)."""
    import torch

    segs, n = flat_layout(shape, ad.rank, ad.targets)
    flat = torch.empty(n, dtype=dtype)
    for s in segs:
        a = ad.tensors[peft_key(s.layer, s.module, "A")]
        b = ad.tensors[peft_key(s.layer, s.module, "B")]
        flat[s.a_off : s.b_off].view(s.rank, s.d_in).copy_(a)
        flat[s.b_off : s.b_off + s.rank * s.d_out].view(s.rank, s.d_out).copy_(b.t())
    return flat


# ---- host tier ------------------------------------------------------------------------------


@dataclass
class HostAdapter:
    """An adapter in host memory: one flat buffer and per-module views into it."""

    name: str
    rank: int
    targets: tuple[str, ...]
    scaling: float
    flat: torch.Tensor
    modules: list[tuple[Segment, torch.Tensor, torch.Tensor]]  # (segment, A view, B^T view)
    pinned: bool

    @property
    def nbytes(self) -> int:
        return self.flat.numel() * self.flat.element_size()


def module_views(
    flat: torch.Tensor, segs: list[Segment]
) -> list[tuple[Segment, torch.Tensor, torch.Tensor]]:
    """(segment, A, B^T) views of a flat adapter buffer laid out as `segs` (flat_layout)."""
    return [
        (
            s,
            flat[s.a_off : s.b_off].view(s.rank, s.d_in),
            flat[s.b_off : s.b_off + s.rank * s.d_out].view(s.rank, s.d_out),
        )
        for s in segs
    ]


class HostPool:
    """Host tier of adapters: pinned or pageable memory, LRU-bounded, reloads from disk.

    mode "pinned": pinned once when loaded from disk (overlap path).
    mode "pageable" / "pin_per_load": pageable; with pin_per_load the driver pins a temporary
    copy for every load (`pin_for_load`), as SGLang's blocking path does.
    """

    def __init__(
        self,
        shape: ModelShape,
        paths: dict[str, str | Path],
        *,
        mode: str = "pinned",
        max_loaded: int | None = None,
        dtype: torch.dtype | None = None,
    ):
        import torch

        self.shape = shape
        self.paths = {k: Path(v) for k, v in paths.items()}
        self.mode = mode
        self.max_loaded = max_loaded
        self.dtype = dtype or (torch.bfloat16 if shape.dtype_bytes == 2 else torch.float32)
        self.loaded: OrderedDict[str, HostAdapter] = OrderedDict()
        self.disk_reads = 0
        self.disk_seconds = 0.0
        self._pin_ok = torch.cuda.is_available()

    def __contains__(self, name: str) -> bool:
        return name in self.loaded

    def get(self, name: str) -> HostAdapter:
        """The adapter, reading it from disk on a miss (evicting the LRU one if full)."""
        if name in self.loaded:
            self.loaded.move_to_end(name)
            return self.loaded[name]
        t0 = time.perf_counter()
        ad = self._read(name)
        self.disk_seconds += time.perf_counter() - t0
        self.disk_reads += 1
        if self.max_loaded is not None:
            while len(self.loaded) >= self.max_loaded:
                self.loaded.popitem(last=False)
        self.loaded[name] = ad
        return ad

    def evict(self, name: str | None) -> None:
        if name is not None:
            self.loaded.pop(name, None)

    def preload(self, names) -> None:
        for n in names:
            self.get(n)

    def _read(self, name: str) -> HostAdapter:
        if name not in self.paths:
            raise KeyError(f"adapter {name!r} has no PEFT folder in the host pool")
        peft = read_peft_adapter(self.paths[name])
        segs, _ = flat_layout(self.shape, peft.rank, peft.targets)
        flat = to_flat(peft, self.shape, self.dtype)
        pinned = self.mode == "pinned" and self._pin_ok
        if pinned:
            flat = flat.pin_memory()
        return HostAdapter(
            name, peft.rank, peft.targets, peft.scaling, flat, module_views(flat, segs), pinned
        )

    def pin_for_load(self, ad: HostAdapter, per_module: bool) -> HostAdapter:
        """A temporary pinned copy for one load (pin_per_load); the caller keeps it alive until
        the copy has finished, then drops it (torch's caching host allocator reuses the blocks).
        Per-module mode pins each module tensor separately, as SGLang does."""
        if not self._pin_ok or ad.pinned:
            return ad
        if not per_module:
            flat = ad.flat.pin_memory()
            segs = [s for s, _, _ in ad.modules]
            return HostAdapter(
                ad.name, ad.rank, ad.targets, ad.scaling, flat, module_views(flat, segs), True
            )
        mods = [(s, a.pin_memory(), b.pin_memory()) for s, a, b in ad.modules]
        return HostAdapter(ad.name, ad.rank, ad.targets, ad.scaling, ad.flat, mods, True)


def write_population(
    root: str | Path, adapters, shape: ModelShape, *, seed: int = 0, share: bool = True
) -> dict[str, Path]:
    """PEFT folders for a trace's adapters. Real adapters (spec.path) are used as they are.

    share=True writes one folder per distinct (rank, targets) and points every adapter of that
    kind at it: timing does not depend on the values, and 100 rank-64 Llama-8B adapters would
    otherwise take 32 GB of disk. Each adapter is still read into its own host buffer.
    """
    root = Path(root)
    out: dict[str, Path] = {}
    made: dict[tuple, Path] = {}
    for i, spec in enumerate(adapters):
        if spec.path:
            out[spec.name] = Path(spec.path)
            continue
        key = (spec.rank, ordered_targets(spec.targets)) if share else (spec.name,)
        if key not in made:
            folder = root / (f"r{spec.rank}_{len(made)}" if share else spec.name)
            if not (folder / "adapter_model.safetensors").exists():
                write_peft_adapter(folder, shape, spec.rank, spec.targets, seed=seed + i)
            made[key] = folder
        out[spec.name] = made[key]
    return out
