"""Loading policies, chosen by name from `registry`."""
