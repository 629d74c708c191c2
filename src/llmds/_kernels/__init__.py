"""Private numba kernels: module-level functions over NumPy arrays (see STYLE.md)."""
