"""The kernel: models, workflow specs, policies and the runtime (no CLI imports here)."""
