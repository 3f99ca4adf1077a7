"""Numerics of fpkit: kernels and operators that see only arrays, grids and fpkit.errors."""
