"""lorasim: discrete-event simulator of LoRA adapter loading in LLM serving.

`sim.core` is the serving core (scheduler + policies) written once and driven by both the
SimPy driver (`sim.simpy_driver`) and the CUDA driver (`gpu.driver`). It never imports
simpy or torch.
"""

__version__ = "0.1.0"
