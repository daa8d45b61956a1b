"""Profile YAML: round trip, ConfigError naming file and key, the shipped analytic profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.config import HardwareCfg
from sim.core.effects import Batch, BatchItem, LoadJob
from sim.core.model import ALL_TARGETS, AdapterSpec, ModelShape
from sim.errors import ConfigError
from sim.hw import Hardware, ProfileCompute, RooflineCompute, load_hardware
from sim.hw.export import analytic_profile
from sim.hw.profile import HardwareProfile

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "configs" / "hardware" / "h200-analytic.yaml"
SHAPE = ModelShape()


@pytest.fixture(scope="module")
def prof() -> HardwareProfile:
    return analytic_profile("h200", SHAPE, "test")


def test_round_trip(tmp_path, prof):
    p = tmp_path / "hw.yaml"
    prof.to_yaml(p)
    back = HardwareProfile.from_yaml(p)
    assert back.to_dict() == prof.to_dict()
    assert not [f for f in tmp_path.iterdir() if f.name != "hw.yaml"]  # no temp file left


def test_shipped_profile_parses_and_matches_the_analytic_model(prof):
    shipped = HardwareProfile.from_yaml(SHIPPED)
    assert shipped.model == SHAPE.name and "sim.hw.export" in shipped.command
    # regenerate with `command` when the analytic model changes
    assert shipped.to_dict()["compute"] == prof.to_dict()["compute"]
    assert shipped.to_dict()["pcie"] == prof.to_dict()["pcie"]


def _write(tmp_path, data) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda d: d.pop("pcie"), "pcie"),
        (lambda d: d["pcie"].update(disk_gbps="fast"), "pcie.disk_gbps"),
        (lambda d: d["pcie"].update(pin_warm_gbps=0), "pcie.pin_warm_gbps"),
        (lambda d: d["pcie"].update(contention=2), "pcie.contention"),
        (lambda d: d["pcie"]["pinned"].update(sizes_bytes=[10, 5]), "pcie.pinned.sizes_bytes"),
        (lambda d: d["pcie"]["pageable"]["seconds"].pop(), "pcie.pageable.seconds"),
        (lambda d: d["compute"]["decode"]["seconds"].pop(), "compute.decode.seconds"),
        (lambda d: d["compute"]["decode"]["seconds"][1].pop(), "compute.decode.seconds[1]"),
        (lambda d: d["compute"]["prefill"]["seconds"].__setitem__(0, -1), "compute.prefill.seconds[0]"),
        (lambda d: d.update(name=""), "name"),
        (lambda d: d["compute"].update(launch_fraction=1.5), "compute.launch_fraction"),
        (lambda d: d["compute"].update(prefill_buckets=[64, 32]), "compute.prefill_buckets"),
        (lambda d: d["compute"].update(adapter_buckets=[1, 4, 2]), "compute.adapter_buckets"),
        (lambda d: d["compute"].update(batch_buckets=[1, 8, 4]), "compute.batch_buckets"),
        (lambda d: d["compute"].update(decode_context="longest"), "compute.decode_context"),
        (lambda d: d["compute"].update(attention_cells="ragged"), "compute.attention_cells"),
        (lambda d: d["compute"].update(hbm_read_gbps=-1), "compute.hbm_read_gbps"),
        (lambda d: d["compute"].update(matmul_tflops="fast"), "compute.matmul_tflops"),
    ],
)
def test_bad_content_names_file_and_key(tmp_path, prof, mutate, key):
    data = prof.to_dict()
    mutate(data)
    p = _write(tmp_path, data)
    with pytest.raises(ConfigError) as e:
        HardwareProfile.from_yaml(p)
    assert e.value.key == key and e.value.source == str(p)


def test_not_yaml_and_not_a_mapping(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        HardwareProfile.from_yaml(p)
    p.write_text("- 1\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        HardwareProfile.from_yaml(p)


def test_lora_table_optional(tmp_path, prof):
    data = prof.to_dict()
    del data["compute"]["lora"]
    back = HardwareProfile.from_yaml(_write(tmp_path, data))
    assert back.compute.lora is None


# ---- load_hardware ---------------------------------------------------------------------


def test_analytic_preset_with_overrides():
    hw = load_hardware(HardwareCfg(pinned_gbps=10, copy_overhead_us=0, contention=0.1), SHAPE)
    assert isinstance(hw, Hardware) and isinstance(hw.compute, RooflineCompute)
    assert hw.copy.dma_time(10**9, 1) == pytest.approx(0.1)
    assert hw.copy.pageable_gbps == 9.0  # untouched preset value
    assert hw.contention == 0.1
    assert load_hardware(HardwareCfg(pin_cache="cold"), SHAPE).copy.pin_gbps == 1.0


def test_hbm_eff_speeds_weight_bound_decode_and_leaves_compute_bound_prefill():
    base, fast = load_hardware(HardwareCfg(), SHAPE), load_hardware(HardwareCfg(hbm_eff=0.9), SHAPE)
    d = Batch("decode", tuple(BatchItem(k, None, -1, 0, 1, 128) for k in range(8)))
    # weight-read bound: twice the attained bandwidth halves the step, less the fixed overhead
    over = base.compute.overhead
    assert fast.compute.forward_time(d) - over == pytest.approx((base.compute.forward_time(d) - over) / 2, rel=1e-6)
    p = Batch("prefill", (BatchItem(0, None, -1, 0, 4096, 0),))
    assert fast.compute.forward_time(p) == pytest.approx(base.compute.forward_time(p), rel=0.02)


def test_hbm_eff_with_a_measured_profile_is_refused():
    with pytest.raises(ConfigError) as e:
        load_hardware(HardwareCfg(profile=str(SHIPPED), hbm_eff=0.9), SHAPE)
    assert e.value.key == "hardware.hbm_eff" and "analytic" in str(e.value)


def test_profile_reproduces_roofline_at_table_points():
    hw = load_hardware(HardwareCfg(profile=str(SHIPPED)), SHAPE)
    roof = load_hardware(HardwareCfg(), SHAPE)
    assert isinstance(hw.compute, ProfileCompute)
    for t in (128, 1024, 2048):
        b = Batch("prefill", (BatchItem(0, None, -1, 0, t, 0),))
        assert hw.compute.forward_time(b) == pytest.approx(roof.compute.forward_time(b), rel=1e-5)
    d = Batch("decode", tuple(BatchItem(k, None, -1, 0, 1, 1024) for k in range(32)))
    assert hw.compute.decode_times(d, 1) == pytest.approx(roof.compute.decode_times(d, 1), rel=1e-5)
    a = AdapterSpec.from_shape("a", 64, ALL_TARGETS, SHAPE)
    job = LoadJob(0, a, 0, "load", "overlap", "flat", "pinned")
    # between table sizes the log-log curve stays close to the analytic one
    assert hw.copy.load_time(job).total == pytest.approx(roof.copy.load_time(job).total, rel=0.05)


def test_profile_with_override_switches_copies_to_analytic():
    hw = load_hardware(HardwareCfg(profile=str(SHIPPED), pinned_gbps=10, copy_overhead_us=0), SHAPE)
    assert hw.copy.pinned_table is None
    assert hw.copy.dma_time(10**9, 1) == pytest.approx(0.1)
    assert np.isfinite(hw.copy.dma_time(10**9, 1, "pageable"))


def test_missing_profile_names_hardware_profile(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_hardware(HardwareCfg(profile=str(tmp_path / "nope.yaml")), SHAPE)
    assert e.value.key == "hardware.profile"


def test_profile_for_another_model_is_refused():
    with pytest.raises(ConfigError) as e:
        load_hardware(HardwareCfg(profile=str(SHIPPED)), ModelShape(name="tiny", hidden=64, layers=2))
    assert e.value.key == "model" and "llama-3.1-8b" in str(e.value)


def test_v2_lora_tables_round_trip_and_v1_still_loads(tmp_path, prof):
    from dataclasses import replace

    from sim.hw.profile import LoraPrefillTable, LoraTable

    comp = replace(
        prof.compute,
        lora=None,
        lora_ranks=LoraTable((16.0, 256.0), (0.0, 1.0, 4.0), ((0.0, 0.01, 0.012), (0.0, 0.011, 0.013))),
        lora_prefill=LoraPrefillTable((64.0,), (256.0, 1024.0), (1.0, 4.0), (((0.02, 0.021), (0.03, 0.031)),)),
        lora_decode=LoraPrefillTable((64.0,), (1.0, 16.0), (1.0, 4.0), (((0.005, 0.006), (0.006, 0.007)),)),
    )
    v2 = replace(prof, compute=comp, pcie=replace(prof.pcie, copy_gap_us=2.5, issue_us=7.25, unpin_per_tensor_us=3.25))
    p = tmp_path / "v2.yaml"
    v2.to_yaml(p)
    back = HardwareProfile.from_yaml(p)
    assert back.to_dict() == v2.to_dict()
    assert back.compute.lora_ranks.ranks == (16.0, 256.0) and back.compute.lora_prefill.tokens == (256.0, 1024.0)
    assert back.compute.lora_decode.tokens == (1.0, 16.0) and back.pcie.copy_gap_us == 2.5 and back.pcie.issue_us == 7.25
    assert back.pcie.unpin_per_tensor_us == 3.25
    assert "unpin_per_tensor_us" not in prof.to_dict()["pcie"]  # unmeasured: left out, reads as 0
    assert v2.to_dict()["compute"]["lora_decode"]["batch"] == [1, 16]
    data = v2.to_dict()
    data["compute"]["lora_decode"]["seconds"][0].pop()
    with pytest.raises(ConfigError) as e:
        HardwareProfile.from_yaml(_write(tmp_path, data))
    assert e.value.key == "compute.lora_decode.seconds[0]"
    data = v2.to_dict()
    data["compute"]["lora"]["seconds"].pop()
    with pytest.raises(ConfigError) as e:
        HardwareProfile.from_yaml(_write(tmp_path, data))
    assert e.value.key == "compute.lora.seconds"
    old = HardwareProfile.from_yaml(SHIPPED)  # v1: single-rank `lora` table with `rank`
    assert old.compute.lora_ranks is None and old.compute.decode_lora().ranks == (64.0,)
    assert old.pcie.copy_gap_us is None  # copies priced as isolated, as before it was measured


def test_launch_fraction_round_trips_and_reaches_the_hardware(tmp_path, prof):
    from dataclasses import replace

    p = tmp_path / "hw.yaml"
    replace(prof, compute=replace(prof.compute, launch_fraction=0.9)).to_yaml(p)
    assert HardwareProfile.from_yaml(p).compute.launch_fraction == 0.9
    assert load_hardware(HardwareCfg(profile=str(p)), SHAPE).launch_fraction == 0.9
    # an explicit key overrides the measured value; analytic presets default to 0
    assert load_hardware(HardwareCfg(profile=str(p), launch_fraction=0.0), SHAPE).launch_fraction == 0.0
    assert load_hardware(HardwareCfg(), SHAPE).launch_fraction == 0.0


def test_forward_overhead_round_trips_and_reaches_the_hardware(tmp_path, prof):
    from dataclasses import replace

    p = tmp_path / "hw.yaml"
    replace(prof, compute=replace(prof.compute, forward_overhead_us=386.0)).to_yaml(p)
    assert HardwareProfile.from_yaml(p).compute.forward_overhead_us == 386.0
    assert load_hardware(HardwareCfg(profile=str(p)), SHAPE).forward_overhead_s == pytest.approx(386e-6)
    over = HardwareCfg(profile=str(p), forward_overhead_us=0.0)
    assert load_hardware(over, SHAPE).forward_overhead_s == 0.0
    assert load_hardware(HardwareCfg(), SHAPE).forward_overhead_s == 0.0
    assert load_hardware(HardwareCfg(forward_overhead_us=100), SHAPE).forward_overhead_s == pytest.approx(1e-4)
    data = yaml.safe_load(p.read_text())
    data["compute"]["forward_overhead_us"] = -1
    with pytest.raises(ConfigError) as e:
        HardwareProfile.from_yaml(_write(tmp_path, data))
    assert e.value.key == "compute.forward_overhead_us"


def test_prefills_are_priced_at_their_padded_size(tmp_path, prof):
    """prefill_buckets: a 100-token prefill costs what a 128-token one does (a harness or
    server padding prefills to CUDA-graph sizes); above the last bucket no padding."""
    from dataclasses import replace

    p = tmp_path / "hw.yaml"
    replace(prof, compute=replace(prof.compute, prefill_buckets=(64, 128, 256))).to_yaml(p)
    back = HardwareProfile.from_yaml(p)
    assert back.compute.prefill_buckets == (64, 128, 256)
    comp = ProfileCompute(back.compute)
    plain = ProfileCompute(replace(back.compute, prefill_buckets=()))  # same (YAML-rounded) tables

    def t(c, n, adapter=None):
        return c.forward_time(Batch("prefill", (BatchItem(0, adapter, 0, 64 if adapter else 0, n, 0),)))

    assert t(comp, 100) == t(plain, 128) > t(plain, 100)
    assert t(comp, 128) == t(plain, 128)
    assert t(comp, 300) == t(plain, 300)  # above the last bucket
    assert t(comp, 100, "a") == t(plain, 128, "a")
    assert [back.compute.padded_tokens(n) for n in (1, 64, 65, 256, 257)] == [64, 64, 128, 256, 257]


def test_batch_buckets_round_trip(tmp_path, prof):
    from dataclasses import replace

    p = tmp_path / "b.yaml"
    replace(prof, compute=replace(prof.compute, batch_buckets=(1, 2, 4, 8, 16, 24))).to_yaml(p)
    assert HardwareProfile.from_yaml(p).compute.batch_buckets == (1, 2, 4, 8, 16, 24)
    prof.to_yaml(p)
    assert "batch_buckets" not in yaml.safe_load(p.read_text())["compute"]
    assert HardwareProfile.from_yaml(p).compute.batch_buckets == ()


def test_decode_context_round_trips_and_defaults_to_mean(tmp_path, prof):
    from dataclasses import replace

    p = tmp_path / "c.yaml"
    replace(prof, compute=replace(prof.compute, decode_context="max")).to_yaml(p)
    assert yaml.safe_load(p.read_text())["compute"]["decode_context"] == "max"
    assert HardwareProfile.from_yaml(p).compute.decode_context == "max"
    prof.to_yaml(p)  # the default is not written, and a profile without the key reads "mean"
    assert "decode_context" not in yaml.safe_load(p.read_text())["compute"]
    assert HardwareProfile.from_yaml(p).compute.decode_context == "mean"


def test_bad_decode_context_says_what_is_expected(tmp_path, prof):
    data = prof.to_dict()
    data["compute"]["decode_context"] = "longest"
    with pytest.raises(ConfigError, match="expected one of mean, max, got 'longest'"):
        HardwareProfile.from_yaml(_write(tmp_path, data))


def test_adapter_buckets_round_trip(tmp_path, prof):
    from dataclasses import replace

    p = tmp_path / "hw.yaml"
    replace(prof, compute=replace(prof.compute, adapter_buckets=(1, 2, 4, 8, 16))).to_yaml(p)
    assert HardwareProfile.from_yaml(p).compute.adapter_buckets == (1, 2, 4, 8, 16)
    prof.to_yaml(p)  # none: no key, and none read back
    assert "adapter_buckets" not in yaml.safe_load(p.read_text())["compute"]
    assert HardwareProfile.from_yaml(p).compute.adapter_buckets == ()


def test_pin_tail_round_trips_and_a_scenario_can_turn_it_off(tmp_path, prof):
    from dataclasses import replace

    from sim.hw.pcie import PinTail

    p = tmp_path / "hw.yaml"
    replace(prof, pcie=replace(prof.pcie, pin_tail_fraction=0.033, pin_tail_ms=53.9)).to_yaml(p)
    back = HardwareProfile.from_yaml(p).pcie
    assert (back.pin_tail_fraction, back.pin_tail_ms) == (0.033, 53.9)
    tail = load_hardware(HardwareCfg(profile=str(p)), SHAPE).pin_tail
    assert isinstance(tail, PinTail) and (tail.fraction, tail.extra_s) == pytest.approx((0.033, 0.0539))
    assert load_hardware(HardwareCfg(profile=str(p), pin_tail_fraction=0.0), SHAPE).pin_tail is None
    assert load_hardware(HardwareCfg(profile=str(p), pin_tail_fraction=0.5), SHAPE).pin_tail.fraction == 0.5
    prof.to_yaml(p)  # none measured: no keys, no tail
    assert "pin_tail_fraction" not in yaml.safe_load(p.read_text())["pcie"]
    assert load_hardware(HardwareCfg(profile=str(p)), SHAPE).pin_tail is None
    data = yaml.safe_load(p.read_text())
    data["pcie"]["pin_tail_fraction"] = 1.5
    with pytest.raises(ConfigError) as e:
        HardwareProfile.from_yaml(_write(tmp_path, data))
    assert e.value.key == "pcie.pin_tail_fraction"


def test_attention_coefficient_round_trips_and_a_scenario_can_override_it(tmp_path, prof):
    from dataclasses import replace

    p = tmp_path / "hw.yaml"
    replace(prof, compute=replace(prof.compute, attention_ms_per_mcell=30.44)).to_yaml(p)
    assert HardwareProfile.from_yaml(p).compute.attention_ms_per_mcell == 30.44
    assert load_hardware(HardwareCfg(profile=str(p)), SHAPE).compute.p.attention_ms_per_mcell == 30.44
    off = load_hardware(HardwareCfg(profile=str(p), attention_ms_per_mcell=0), SHAPE)
    assert off.compute.p.attention_ms_per_mcell == 0
    data = yaml.safe_load(p.read_text())
    data["compute"]["attention_ms_per_mcell"] = -1
    with pytest.raises(ConfigError) as e:
        HardwareProfile.from_yaml(_write(tmp_path, data))
    assert e.value.key == "compute.attention_ms_per_mcell"


def test_attention_cells_round_trip_and_default_to_padded(tmp_path, prof):
    """`compute.attention_cells` says how the attention coefficient counts cells; profiles
    without it (made before issue #26) are padded, and padded is not written."""
    from dataclasses import replace

    p = tmp_path / "hw.yaml"
    replace(prof, compute=replace(prof.compute, attention_cells="causal")).to_yaml(p)
    assert yaml.safe_load(p.read_text())["compute"]["attention_cells"] == "causal"
    assert HardwareProfile.from_yaml(p).compute.attention_cells == "causal"
    prof.to_yaml(p)
    assert "attention_cells" not in yaml.safe_load(p.read_text())["compute"]
    assert HardwareProfile.from_yaml(p).compute.attention_cells == "padded"
    data = prof.to_dict()
    data["compute"]["attention_cells"] = "ragged"
    with pytest.raises(ConfigError, match="expected one of padded, causal, got 'ragged'"):
        HardwareProfile.from_yaml(_write(tmp_path, data))


def test_device_rates_round_trip_and_are_optional(tmp_path, prof):
    """`compute.hbm_read_gbps` and `compute.matmul_tflops`: written when measured (4 significant
    digits), absent and 0 when not; negative or non-numbers name their key."""
    from dataclasses import replace

    p = tmp_path / "hw.yaml"
    replace(prof, compute=replace(prof.compute, hbm_read_gbps=4321.0, matmul_tflops=712.4)).to_yaml(p)
    data = yaml.safe_load(p.read_text())["compute"]
    assert (data["hbm_read_gbps"], data["matmul_tflops"]) == (4321.0, 712.4)
    back = HardwareProfile.from_yaml(p).compute
    assert (back.hbm_read_gbps, back.matmul_tflops) == (4321.0, 712.4)
    prof.to_yaml(p)
    assert not {"hbm_read_gbps", "matmul_tflops"} & set(yaml.safe_load(p.read_text())["compute"])
    back = HardwareProfile.from_yaml(p).compute
    assert back.hbm_read_gbps == back.matmul_tflops == 0.0
    data = prof.to_dict()
    data["compute"]["hbm_read_gbps"] = -5
    with pytest.raises(ConfigError, match="expected a non-negative number, got -5") as e:
        HardwareProfile.from_yaml(_write(tmp_path, data))
    assert e.value.key == "compute.hbm_read_gbps"
