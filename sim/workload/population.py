"""The adapter population: synthetic groups sized from the model shape, or real PEFT folders.

Order matters: adapter index i (1-based) of the choice distributions is the i-th adapter of
the returned tuple, so real PEFT adapters come first (sorted by folder name), then the
synthetic groups in config order, named `lora-0001`, `lora-0002`, ...
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from sim.config import AdaptersCfg
from sim.core.model import ALL_TARGETS, AdapterSpec, ModelShape
from sim.errors import ConfigError

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
_KEY = "adapters.peft_dir"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors itself refuses headers above 100 MB


def build_population(cfg: AdaptersCfg, shape: ModelShape) -> tuple[AdapterSpec, ...]:
    """All adapters of the scenario, real ones (if `peft_dir`) first, then synthetic groups."""
    adapters: list[AdapterSpec] = list(read_peft_dir(cfg.peft_dir)) if cfg.peft_dir else []
    k = 0
    for group in cfg.group_list():
        for _ in range(group.count):
            k += 1
            adapters.append(
                AdapterSpec.from_shape(f"lora-{k:04d}", group.rank, group.target_tuple(), shape)
            )
    names = [a.name for a in adapters]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            cfg.peft_dir or "<scenario>", _KEY, f"adapter names clash with synthetic names: {dup}"
        )
    return tuple(adapters)


def read_peft_dir(peft_dir: str) -> tuple[AdapterSpec, ...]:
    """Every subfolder (or the folder itself) holding a PEFT adapter, sorted by name."""
    root = Path(peft_dir)
    if not root.is_dir():
        raise ConfigError(peft_dir, _KEY, "not a directory")
    candidates = [root] + sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name)
    found = [read_peft_adapter(p) for p in candidates if _is_peft(p)]
    if not found:
        raise ConfigError(
            peft_dir, _KEY, f"no subfolder holds both {PEFT_CONFIG} and {PEFT_WEIGHTS}"
        )
    return tuple(found)


def _is_peft(folder: Path) -> bool:
    return (folder / PEFT_CONFIG).is_file() and (folder / PEFT_WEIGHTS).is_file()


def read_peft_adapter(folder: Path) -> AdapterSpec:
    """Rank and targets from adapter_config.json; bytes and tensor count from the
    safetensors header (the weights themselves are never read)."""
    cfg_path = folder / PEFT_CONFIG
    try:
        conf = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(str(cfg_path), "", f"not readable JSON: {e}") from None
    if not isinstance(conf, dict):
        raise ConfigError(str(cfg_path), "", "expected a JSON object")
    rank = conf.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank <= 0:
        raise ConfigError(str(cfg_path), "r", f"expected a positive integer rank, got {rank!r}")
    header = read_safetensors_header(folder / PEFT_WEIGHTS)
    targets = _targets(conf.get("target_modules"), header, cfg_path)
    nbytes = sum(end - start for start, end in (t["data_offsets"] for t in header.values()))
    return AdapterSpec(
        name=folder.name,
        rank=rank,
        targets=targets,
        nbytes=nbytes,
        n_tensors=len(header),
        path=str(folder),
    )


def _targets(raw: object, header: dict, cfg_path: Path) -> tuple[str, ...]:
    """Target modules in canonical order. PEFT also allows a regex string; then the
    modules are taken from the tensor names instead."""
    if isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
        names = set(raw)
    elif isinstance(raw, str):
        names = {t for t in ALL_TARGETS if any(f".{t}." in k for k in header)}
    else:
        raise ConfigError(
            str(cfg_path), "target_modules", f"expected a list of module names, got {raw!r}"
        )
    known = tuple(t for t in ALL_TARGETS if t in names)
    other = tuple(sorted(names - set(ALL_TARGETS)))
    if not known and not other:
        raise ConfigError(str(cfg_path), "target_modules", "names no module")
    return known + other


def read_safetensors_header(path: Path) -> dict[str, dict]:
    """Tensor entries of a safetensors file: u64 little-endian header length, JSON header."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("file shorter than the 8-byte header length")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                raise ValueError(f"header length {n} is implausible")
            raw = f.read(n)
            if len(raw) < n:
                raise ValueError("header truncated")
            f.seek(0, 2)
            data_len = f.tell() - 8 - n
        meta = json.loads(raw)
        tensors = {k: v for k, v in meta.items() if k != "__metadata__"}
        for k, v in tensors.items():
            start, end = v["data_offsets"]
            if not 0 <= start <= end <= data_len:
                raise ValueError(f"tensor {k!r} lies outside the file (truncated?)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(str(path), "", f"not a valid safetensors file: {e}") from None
    if not tensors:
        raise ConfigError(str(path), "", "holds no tensors")
    return tensors
