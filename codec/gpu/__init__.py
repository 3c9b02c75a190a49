"""GPU path (docs/gpu.md)."""
