"""Plain data the serving core, the workloads and both drivers agree on."""

from __future__ import annotations

from dataclasses import dataclass, field

# The seven Llama projections LoRA is usually applied to, in PEFT naming.
ALL_TARGETS: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)


@dataclass(frozen=True)
class ModelShape:
    """Shape of a Llama-style decoder; adapter sizes and compute costs follow from it."""

    name: str = "llama-3.1-8b"
    hidden: int = 4096
    intermediate: int = 14336
    layers: int = 32
    heads: int = 32
    kv_heads: int = 8
    vocab: int = 128256
    dtype_bytes: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def proj_dims(self, target: str) -> tuple[int, int]:
        """(in_features, out_features) of one projection."""
        h, i, kv = self.hidden, self.intermediate, self.kv_heads * self.head_dim
        dims = {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }
        try:
            return dims[target]
        except KeyError as e:
            raise ValueError(f"unknown LoRA target module {target!r}; expected one of {ALL_TARGETS}") from e

    def adapter_bytes(self, rank: int, targets: tuple[str, ...]) -> int:
        """Bytes of a LoRA adapter: A (r x in) and B (out x r) per target per layer."""
        per_layer = sum(rank * (a + b) for a, b in (self.proj_dims(t) for t in targets))
        return per_layer * self.layers * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """KV cache bytes of one token: K and V per layer per KV head."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes

    def params(self) -> int:
        """Base-model parameters in the decoder layers plus embeddings and LM head."""
        per_layer = sum(a * b for a, b in (self.proj_dims(t) for t in ALL_TARGETS))
        return per_layer * self.layers + 2 * self.vocab * self.hidden


@dataclass(frozen=True)
class AdapterSpec:
    """One LoRA adapter of the population. `nbytes` is what a load moves over PCIe."""

    name: str
    rank: int
    targets: tuple[str, ...]
    nbytes: int
    n_tensors: int  # module tensors (A and B per target per layer): copies in per-module mode
    path: str | None = None  # PEFT directory when the adapter is a real file

    @staticmethod
    def from_shape(name: str, rank: int, targets: tuple[str, ...], shape: ModelShape) -> AdapterSpec:
        return AdapterSpec(
            name=name,
            rank=rank,
            targets=tuple(targets),
            nbytes=shape.adapter_bytes(rank, tuple(targets)),
            n_tensors=2 * len(targets) * shape.layers,
        )


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a trace. `adapter` None means the base model (it still takes a slot)."""

    rid: int
    arrival: float  # seconds from trace start
    adapter: str | None
    input_len: int
    output_len: int


@dataclass(slots=True)
class RequestState:
    """Mutable progress of a request inside the scheduler; becomes a metrics record."""

    req: Request
    prefilled: int = 0  # prompt tokens processed so far (chunked prefill)
    decoded: int = 0  # output tokens produced (the first comes from the prefill)
    admitted_at: float | None = None  # first scheduled into a prefill batch
    first_token_at: float | None = None
    finished_at: float | None = None
    adapter_hit: bool | None = None  # adapter resident when the request was first considered
    adapter_ready_at: float | None = None  # when its adapter became usable for it
    first_decode_step: int = -1  # index into the engine's global decode-step time list
    decode_steps: int = 0
    waited_on_adapter: float = 0.0
    skipped: int = 0  # times the scan skipped it for want of an adapter slot
    # when it reached the waiting queue, if later than its arrival (held for a host-tier
    # reload): SGLang's wait_queue_entry_time, which the drainer's starvation clock reads
    queued_at: float | None = None

    @property
    def rid(self) -> int:
        return self.req.rid

    @property
    def adapter(self) -> str | None:
        return self.req.adapter

    @property
    def prefill_remaining(self) -> int:
        return self.req.input_len - self.prefilled

    @property
    def done(self) -> bool:
        return self.finished_at is not None


@dataclass(frozen=True)
class Trace:
    """A workload: the adapter population and the requests, sorted by arrival."""

    adapters: tuple[AdapterSpec, ...]
    requests: tuple[Request, ...]
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def adapter_map(self) -> dict[str, AdapterSpec]:
        return {a.name: a for a in self.adapters}
