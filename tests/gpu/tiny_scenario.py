"""The tiny validation scenario shared by the validate tests."""

SCENARIO = {
    "name": "tiny-val",
    "seed": 1,
    "model": {"preset": "tiny"},
    "hardware": {"preset": "cpu"},
    "adapters": {
        "groups": [
            {"count": 3, "rank": 8},
            {"count": 2, "rank": 4, "targets": ["q_proj", "v_proj"]},
        ]
    },
    "workload": {
        "num_requests": 8,
        "arrival": {"process": "poisson", "rate": 200.0},
        "adapter_choice": {"dist": "uniform"},
        "input_len": {"dist": "random", "len": 12, "range_ratio": 0.5},
        "output_len": {"dist": "fixed", "len": 4},
    },
    "serving": {"max_loras_per_batch": 2, "max_loaded_loras": 3},
    "policies": ["lru", "overlap"],
}
