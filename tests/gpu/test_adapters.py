"""PEFT files round-trip; the host tier's LRU and disk reload."""

import json

import pytest

torch = pytest.importorskip("torch")

from gpu.adapters import HostPool, peft_key, read_peft_adapter, write_peft_adapter, write_population  # noqa: E402
from sim.config import MODEL_PRESETS  # noqa: E402
from sim.core.model import AdapterSpec  # noqa: E402

TINY = MODEL_PRESETS["tiny"]


def test_peft_write_read_round_trip(tmp_path):
    p = write_peft_adapter(tmp_path / "ad", TINY, 4, ("q_proj", "down_proj"), alpha=8)
    cfg = json.loads((p / "adapter_config.json").read_text())
    assert (
        cfg["r"] == 4
        and cfg["lora_alpha"] == 8
        and cfg["target_modules"] == ["q_proj", "down_proj"]
    )
    ad = read_peft_adapter(p)
    assert ad.rank == 4 and ad.scaling == 2.0 and ad.targets == ("q_proj", "down_proj")
    assert len(ad.tensors) == 2 * 2 * TINY.layers
    a = ad.tensors["base_model.model.model.layers.1.mlp.down_proj.lora_A.weight"]
    b = ad.tensors[peft_key(1, "down_proj", "B")]
    assert tuple(a.shape) == (4, TINY.intermediate) and tuple(b.shape) == (TINY.hidden, 4)
    assert (
        peft_key(0, "q_proj", "A")
        == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    )
    spec = AdapterSpec.from_shape("x", 4, ("q_proj", "down_proj"), TINY)
    assert sum(t.numel() * t.element_size() for t in ad.tensors.values()) == spec.nbytes


def test_host_pool_lru_evicts_least_recent_and_reloads(tmp_path):
    specs = [AdapterSpec.from_shape(f"a{i}", 4, ("q_proj",), TINY) for i in range(3)]
    paths = write_population(tmp_path, specs, TINY, share=False)
    pool = HostPool(TINY, paths, mode="pageable", max_loaded=2)
    pool.get("a0")
    pool.get("a1")
    pool.get("a0")  # a1 is now least recently used
    pool.get("a2")
    assert "a1" not in pool and "a0" in pool and "a2" in pool
    reads = pool.disk_reads
    ad = pool.get("a1")
    assert pool.disk_reads == reads + 1 and "a0" not in pool
    assert ad.flat.numel() * ad.flat.element_size() == specs[1].nbytes
    assert len(ad.modules) == TINY.layers and not ad.pinned


def test_shared_population_writes_one_folder_per_kind(tmp_path):
    specs = [AdapterSpec.from_shape(f"a{i}", 4, ("q_proj",), TINY) for i in range(3)]
    paths = write_population(tmp_path, specs, TINY)
    assert len(set(paths.values())) == 1
    pool = HostPool(TINY, paths)
    assert pool.get("a0").flat.data_ptr() != pool.get("a1").flat.data_ptr()
