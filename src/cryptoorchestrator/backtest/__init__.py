"""The backtesting engine: numba kernels, event replay, metrics, optimisation, reports."""
