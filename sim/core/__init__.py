"""Serving core: pure Python, no simpy, no torch. Drivers execute the effects it yields."""
