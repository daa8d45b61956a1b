"""What the commands share: the torch check, the CPU guard for large models, model presets
and the prefill-graph option, which calibrate and validate must agree on."""

from __future__ import annotations

from typing import Annotated

import typer

from sim.core.model import ModelShape
from sim.errors import LorasimError

# --prefill-graph-tokens of calibrate and validate: both sides of a validation must agree
PrefillGraphTokens = Annotated[
    int,
    typer.Option(
        min=0,
        help="largest prefill (packed tokens) replayed as piecewise CUDA graphs; longer ones "
        "run eagerly. 0: every prefill eager (validation rounds 1-5). Calibrate and validate "
        "with the same value",
    ),
]


class TorchMissing(LorasimError):
    """The GPU commands need torch, which only the `gpu` extra installs."""

    def __init__(self) -> None:
        super().__init__(
            "torch is not installed; install the GPU extra: pip install 'lorasim[gpu]'"
        )


def need_torch() -> None:
    """Raise TorchMissing (a message, not a traceback) when torch is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise TorchMissing() from None


# weights above this are not built on the CPU unless --device says so (bytes)
CPU_WEIGHT_LIMIT = 2 * 2**30


def refuse_big_model_on_cpu(shape: ModelShape, device: str | None, source: str, key: str) -> None:
    """Without CUDA the harness builds its model on the CPU, where an 8B model's weights
    alone take ~16 GB (fp32: ~32): the process is killed for memory with no message. Refuse
    a large model there unless --device asked for it."""
    import torch

    from sim.errors import ConfigError

    if device is not None or torch.cuda.is_available():
        return
    nbytes = shape.params() * shape.dtype_bytes
    if nbytes > CPU_WEIGHT_LIMIT:
        raise ConfigError(
            source, key,
            f"{shape.name} has {nbytes / 2**30:.0f} GiB of weights and this machine has no CUDA "
            "device; run this on a GPU, re-simulate recorded GPU runs with --gpu-runs DIR "
            "(validate), or pass --device cpu to build it on the CPU anyway",
        )


def model_shape(model: str) -> ModelShape:
    """The model preset named `model` (ConfigError naming --model if there is none)."""
    from sim.config import MODEL_PRESETS
    from sim.errors import ConfigError

    if model not in MODEL_PRESETS:
        raise ConfigError(
            "--model",
            "",
            f"unknown model preset {model!r}; expected one of {sorted(MODEL_PRESETS)}",
        )
    return MODEL_PRESETS[model]
