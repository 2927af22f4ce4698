"""Argument checks shared across the package."""

from __future__ import annotations

import numpy as np


def is_int(value, *, numpy: bool = True) -> bool:
    """Whether `value` is an integer and not a bool (bool is an int subclass); with `numpy`,
    numpy integers count too."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer) if numpy else int)


def check_triangles(triangles, n_vertices: int) -> np.ndarray:
    """`triangles` as an (F, 3) int64 array, or a ValueError unless it is an integer array of that
    shape indexing `n_vertices` vertices."""
    f = np.asarray(triangles)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"triangles must be an integer array of shape (F, 3), got {f.dtype} {f.shape}.")
    if f.size and (f.min() < 0 or f.max() >= n_vertices):
        raise ValueError(f"triangles index outside the {n_vertices} vertices.")
    return f.astype(np.int64)
