"""Adapter populations: synthetic sizes from the model shape, real PEFT folders from files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from sim.config import MODEL_PRESETS, AdapterGroup, AdaptersCfg
from sim.core.model import ALL_TARGETS, ModelShape
from sim.errors import ConfigError
from sim.workload import build_population

LLAMA8B = MODEL_PRESETS["llama-3.1-8b"]
TINY = MODEL_PRESETS["tiny"]


def test_rank64_all_modules_llama8b_is_320_mib_and_448_tensors():
    (a,) = build_population(AdaptersCfg(count=1, rank=64), LLAMA8B)
    assert a.nbytes == 335_544_320 == 320 * 2**20
    assert a.n_tensors == 448
    assert a.targets == ALL_TARGETS
    assert a.path is None


def test_groups_are_named_in_order_with_their_rank_and_targets():
    cfg = AdaptersCfg(
        groups=[
            AdapterGroup(count=2, rank=8, targets=["q_proj", "v_proj"]),
            AdapterGroup(count=3, rank=64),
        ]
    )
    pop = build_population(cfg, LLAMA8B)
    assert [a.name for a in pop] == [f"lora-000{i}" for i in range(1, 6)]
    assert [a.rank for a in pop] == [8, 8, 64, 64, 64]
    assert pop[0].targets == ("q_proj", "v_proj")
    # q: 8*(4096+4096), v: 8*(4096+1024); per layer, 32 layers, bf16
    assert pop[0].nbytes == (8 * 8192 + 8 * 5120) * 32 * 2
    assert pop[0].n_tensors == 2 * 2 * 32
    assert pop[2].nbytes == 335_544_320


def write_peft(
    folder: Path, rank: int, targets: list[str], shape: ModelShape, regex: bool = False
) -> int:
    """A PEFT adapter with fp16 tensors; returns the bytes of its tensors."""
    folder.mkdir(parents=True)
    tensors = {}
    for layer in range(shape.layers):
        for t in targets:
            fan_in, fan_out = shape.proj_dims(t)
            block = "self_attn" if t in ALL_TARGETS[:4] else "mlp"
            key = f"base_model.model.model.layers.{layer}.{block}.{t}"
            tensors[f"{key}.lora_A.weight"] = np.zeros((rank, fan_in), np.float16)
            tensors[f"{key}.lora_B.weight"] = np.ones((fan_out, rank), np.float16)
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    target_modules = "|".join(targets) if regex else targets
    conf = {
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": target_modules,
        "peft_type": "LORA",
    }
    (folder / "adapter_config.json").write_text(json.dumps(conf))
    return sum(a.nbytes for a in tensors.values())


def test_peft_folder_is_read_back_with_rank_targets_and_size(tmp_path):
    nb = write_peft(tmp_path / "b-sql", 4, ["v_proj", "q_proj"], TINY)
    write_peft(tmp_path / "a-chat", 8, ["down_proj"], TINY)
    (tmp_path / "not-an-adapter").mkdir()
    pop = build_population(AdaptersCfg(peft_dir=str(tmp_path)), TINY)
    assert [a.name for a in pop] == ["a-chat", "b-sql"]
    sql = pop[1]
    assert sql.rank == 4
    assert sql.targets == ("q_proj", "v_proj")
    assert sql.nbytes == nb
    # the same adapter at fp16 as computed from the shape
    fp16 = ModelShape(**{**TINY.__dict__, "dtype_bytes": 2})
    assert sql.nbytes == fp16.adapter_bytes(4, ("q_proj", "v_proj"))
    assert sql.n_tensors == 2 * 2 * TINY.layers
    assert sql.path == str(tmp_path / "b-sql")


def test_peft_adapters_come_first_then_synthetic_groups(tmp_path):
    write_peft(tmp_path / "real", 4, ["q_proj"], TINY)
    pop = build_population(AdaptersCfg(peft_dir=str(tmp_path), count=2, rank=2), TINY)
    assert [a.name for a in pop] == ["real", "lora-0001", "lora-0002"]


def test_regex_target_modules_are_inferred_from_tensor_names(tmp_path):
    write_peft(tmp_path / "x", 2, ["k_proj", "up_proj"], TINY, regex=True)
    (a,) = build_population(AdaptersCfg(peft_dir=str(tmp_path)), TINY)
    assert a.targets == ("k_proj", "up_proj")


def test_folder_without_adapters_is_a_config_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="adapters.peft_dir") as e:
        build_population(AdaptersCfg(peft_dir=str(tmp_path)), TINY)
    assert str(tmp_path) in str(e.value)
    assert "adapter_config.json" in str(e.value)


def test_missing_peft_dir_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        build_population(AdaptersCfg(peft_dir=str(tmp_path / "nope")), TINY)


def test_truncated_safetensors_is_a_config_error_naming_the_file(tmp_path):
    write_peft(tmp_path / "x", 2, ["q_proj"], TINY)
    f = tmp_path / "x" / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="safetensors") as e:
        build_population(AdaptersCfg(peft_dir=str(tmp_path)), TINY)
    assert str(f) in str(e.value)


def test_garbage_header_is_a_config_error(tmp_path):
    write_peft(tmp_path / "x", 2, ["q_proj"], TINY)
    f = tmp_path / "x" / "adapter_model.safetensors"
    f.write_bytes(struct.pack("<Q", 5) + b"{oops")
    with pytest.raises(ConfigError, match="not a valid safetensors"):
        build_population(AdaptersCfg(peft_dir=str(tmp_path)), TINY)


def test_bad_rank_in_adapter_config_names_the_key(tmp_path):
    write_peft(tmp_path / "x", 2, ["q_proj"], TINY)
    conf = tmp_path / "x" / "adapter_config.json"
    conf.write_text(json.dumps({"r": "two", "target_modules": ["q_proj"]}))
    with pytest.raises(ConfigError, match=r"adapter_config.json: r: expected a positive integer"):
        build_population(AdaptersCfg(peft_dir=str(tmp_path)), TINY)
