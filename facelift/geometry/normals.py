"""Normals of a triangle mesh: per face (area-weighted, unnormalised) and per vertex (unit).

Counter-clockwise triangles give normals on the side they are counter-clockwise from
(docs/ARCHITECTURE.md: the face model's triangles are counter-clockwise seen from +Z).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_triangles


def _vertices(vertices) -> np.ndarray:
    v = np.asarray(vertices, np.float64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {v.shape}.")
    return v


def _cross(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    return np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted face normals.

    Args:
        vertices: (N, 3) positions.
        triangles: (F, 3) integer vertex indices.

    Returns:
        (F, 3) float64 `(v1 - v0) x (v2 - v0)`: unnormalised, its length twice the triangle's area.
    """
    v = _vertices(vertices)
    return _cross(v, check_triangles(triangles, len(v)))


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals: each vertex's normal is the normalised sum of the face
    normals of its triangles.

    Args:
        vertices: (N, 3) positions.
        triangles: (F, 3) integer vertex indices.

    Returns:
        (N, 3) float32 unit normals (computed in float64); vertices on no (or only degenerate)
        triangles get a zero normal.
    """
    v = _vertices(vertices)
    f = check_triangles(triangles, len(v))
    fn = _cross(v, f)  # its length is twice the area: summing it weights by area
    idx = f.ravel()
    n = np.stack([np.bincount(idx, np.repeat(fn[:, c], 3), minlength=len(v)) for c in range(3)], -1)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(length > 0, length, 1.0)).astype(np.float32)
