"""The GPU harness (torch only inside the modules that need it: `lorasim --help` and the
simulator never import torch through this package)."""

# Largest prefill (packed tokens) the harness replays as piecewise CUDA graphs by default
# (gpu.prefill_graphs); here so that the CLI and GpuOptions can name it without torch.
PREFILL_GRAPH_TOKENS = 2048

# A GPU run whose slowest stretch of forwards ran over this many times the run's usual pace
# against the profile is called degraded (gpu.run_health); here for the CLI's default.
DEGRADED_ABOVE = 1.15
