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
    """(v1 - v0) x (v2 - v0) per triangle, (F, 3): written out on coordinate arrays, ~3x faster than
    np.cross on gathered (F, 3) rows."""
    x, y, z = np.ascontiguousarray(v.T)
    i0, i1, i2 = np.asarray(f, np.intp).T
    ax, ay, az = x[i1] - x[i0], y[i1] - y[i0], z[i1] - z[i0]
    bx, by, bz = x[i2] - x[i0], y[i2] - y[i0], z[i2] - z[i0]
    return np.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], -1)


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
    fn = _cross(v, f).T  # its length is twice the area: summing it weights by area
    corners = np.asarray(f, np.intp).T
    n = np.stack([sum(np.bincount(i, fn[c], minlength=len(v)) for i in corners) for c in range(3)], -1)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(length > 0, length, 1.0)).astype(np.float32)
