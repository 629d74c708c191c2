"""Private numba kernels: functions over NumPy arrays; their callers validate every input."""
