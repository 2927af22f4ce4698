"""Loop subdivision of a triangle mesh as linear operators on its base vertices.

Subdivided positions are `operator @ base positions` (Loop's rules inside, the boundary rules on
boundary edges and vertices): a fixed sparse matrix per mesh, so a subdivided surface of any fitted
shape is one sparse product (`mesh.DenseMeshBuilder`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .._validate import check_triangles, is_int


class LoopSubdivision(NamedTuple):
    """`operator` (N_sub, N): subdivided positions = operator @ base positions (Loop rules,
    boundary rules on boundary edges/vertices). `triangles` (F_sub, 3) int32 keep the base
    orientation. `midpoint` (N_sub, N): plain edge-midpoint interpolation of the base, used
    for attributes that must not be smoothed (UVs: uv_sub = midpoint @ uv). Base vertex k
    stays vertex k; each level appends one vertex per edge."""

    operator: sp.csr_matrix
    triangles: np.ndarray
    midpoint: sp.csr_matrix


def _loop_once(tris: np.ndarray, n: int):
    """One Loop step: (operator (n+E, n), midpoint (n+E, n), new triangles)."""
    a = tris.reshape(-1)
    b = tris[:, [1, 2, 0]].reshape(-1)
    opp = tris[:, [2, 0, 1]].reshape(-1)  # vertex opposite half-edge (a, b) in its triangle
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    codes, edge_of_half, count = np.unique(lo * n + hi, return_inverse=True, return_counts=True)
    e0, e1 = codes // n, codes % n
    n_edges = len(codes)
    interior = count == 2  # edges on one triangle (boundary) or >2 (non-manifold) use the midpoint

    # odd (edge) vertices: 3/8 (a + b) + 1/8 (c + d) inside, 1/2 (a + b) on boundaries
    w_end = np.where(interior, 3 / 8, 1 / 2)
    half_in = interior[edge_of_half]
    rows = np.concatenate([np.arange(n_edges), np.arange(n_edges), edge_of_half[half_in]])
    cols = np.concatenate([e0, e1, opp[half_in]])
    vals = np.concatenate([w_end, w_end, np.full(half_in.sum(), 1 / 8)])
    odd = sp.csr_matrix((vals, (rows, cols)), shape=(n_edges, n))

    # even (old) vertices
    valence = np.bincount(np.concatenate([e0, e1]), minlength=n)
    be0, be1 = e0[~interior], e1[~interior]
    n_boundary = np.bincount(np.concatenate([be0, be1]), minlength=n)
    nonmanifold = np.zeros(n, bool)
    nonmanifold[e0[count > 2]] = nonmanifold[e1[count > 2]] = True
    inner = (valence > 0) & (n_boundary == 0)
    boundary = (n_boundary == 2) & ~nonmanifold
    k = np.maximum(valence, 1).astype(np.float64)
    beta = (5 / 8 - (3 / 8 + np.cos(2 * np.pi / k) / 4) ** 2) / k
    center = np.where(inner, 1 - valence * beta, np.where(boundary, 3 / 4, 1.0))
    r_in = np.concatenate([e0, e1])
    c_in = np.concatenate([e1, e0])
    keep_in = inner[r_in]
    r_bd = np.concatenate([be0, be1])
    c_bd = np.concatenate([be1, be0])
    keep_bd = boundary[r_bd]
    rows = np.concatenate([np.arange(n), r_in[keep_in], r_bd[keep_bd]])
    cols = np.concatenate([np.arange(n), c_in[keep_in], c_bd[keep_bd]])
    vals = np.concatenate([center, beta[r_in[keep_in]], np.full(keep_bd.sum(), 1 / 8)])
    even = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))

    mid = sp.csr_matrix(
        (np.full(2 * n_edges, 0.5), (np.tile(np.arange(n_edges), 2), np.concatenate([e0, e1]))),
        shape=(n_edges, n),
    )
    operator = sp.vstack([even, odd]).tocsr()
    midpoint = sp.vstack([sp.identity(n, format="csr"), mid]).tocsr()

    m = (n + edge_of_half).reshape(-1, 3)  # m[:, 0] on edge (v0, v1), m[:, 1] on (v1, v2), m[:, 2] on (v2, v0)
    v0, v1, v2 = tris.T
    m01, m12, m20 = m.T
    new = np.concatenate([
        np.stack([v0, m01, m20], 1),
        np.stack([v1, m12, m01], 1),
        np.stack([v2, m20, m12], 1),
        np.stack([m01, m12, m20], 1),
    ])
    return operator, midpoint, new


def loop_subdivision_matrix(triangles: np.ndarray, n_vertices: int, levels: int) -> LoopSubdivision:
    """Loop subdivision of a triangle mesh as linear operators on its base vertices.

    Returns LoopSubdivision(operator (N_sub, N) csr, triangles_sub (F_sub, 3) int32,
    midpoint (N_sub, N) csr); unpacks as a 3-tuple. `levels=0` is the identity.
    """
    if not is_int(n_vertices) or n_vertices < 0:
        raise ValueError(f"n_vertices must be a non-negative integer, got {n_vertices!r}.")
    if not is_int(levels) or levels < 0:
        raise ValueError(f"levels must be a non-negative integer, got {levels!r}.")
    tris = check_triangles(triangles, n_vertices)
    n = int(n_vertices)
    operator = sp.identity(n, format="csr")
    midpoint = sp.identity(n, format="csr")
    for _ in range(levels):
        op, mid, tris = _loop_once(tris, n)
        operator = (op @ operator).tocsr()
        midpoint = (mid @ midpoint).tocsr()
        n = op.shape[0]
    return LoopSubdivision(operator, tris.astype(np.int32), midpoint)
