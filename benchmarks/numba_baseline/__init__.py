"""The numba kernels the C kernels replaced (codec/pixelmodel.py and codec/rans.py at commit
29b2273), kept only so benchmarks/kernel_speed.py can time both side by side in one process.
Needs the `bench` extra (numba); the codec itself never imports this."""
