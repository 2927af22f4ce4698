"""Rasterising a triangle mesh in its UV layout: which triangle, and where in it, each texel
centre of an R x R map falls on (docs/ARCHITECTURE.md: row i, column j is the texel centred at
`u = (j + 0.5) / R`, `v = 1 - (i + 0.5) / R`).

One rasteriser serves the face model's texel maps (`FaceModel.texel_map`) and the dense mesh's
grid (`mesh.DenseMeshBuilder`, on the Loop-subdivided layout).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_triangles

#: Slack of the inside test, in barycentric units and in texels (texel centres on an edge or a
#: corner count as inside).
_EPS = 1e-6


def uv_to_texel(uv, resolution: int) -> np.ndarray:
    """(..., 2) UV coordinates -> (..., 2) float64 texel units (x, y) of an R x R map: texel (i, j)'s
    centre is (j, i); v points up, rows down."""
    uv = np.asarray(uv, np.float64)
    return np.stack([uv[..., 0] * resolution - 0.5, (1.0 - uv[..., 1]) * resolution - 0.5], -1)


def rasterize_uv(uv: np.ndarray, triangles: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangle id and barycentrics of every texel centre of an R x R UV map.

    Args:
        uv: (N, 2) per-vertex UV coordinates, `u` right, `v` up.
        triangles: (F, 3) integer vertex indices.
        resolution: R, texels a side.

    Returns:
        `tri` (R, R) int32, the triangle each texel centre lies in (-1 outside the layout), and
        `bary` (R, R, 3) float32, its barycentric coordinates in that triangle's corners (zero
        outside). A texel centre on an edge shared by several triangles goes to the one with the
        highest index. Computed in float64 whatever the dtype of `uv`.

    Vectorised over triangles: they are bucketed by the size of their bounding box in texels, and
    every bucket is tested against its boxes' texels at once.
    """
    G = int(resolution)
    uv = np.asarray(uv)
    tris = check_triangles(triangles, len(uv))
    tri_map = np.full((G, G), -1, np.int32)
    bary_map = np.zeros((G, G, 3), np.float32)
    px, py = uv_to_texel(uv, G).T
    xs, ys = px[tris], py[tris]  # (F, 3)
    x0 = np.maximum(np.ceil(xs.min(1) - _EPS), 0).astype(np.int64)
    x1 = np.minimum(np.floor(xs.max(1) + _EPS), G - 1).astype(np.int64)
    y0 = np.maximum(np.ceil(ys.min(1) - _EPS), 0).astype(np.int64)
    y1 = np.minimum(np.floor(ys.max(1) + _EPS), G - 1).astype(np.int64)
    det = (ys[:, 1] - ys[:, 2]) * (xs[:, 0] - xs[:, 2]) + (xs[:, 2] - xs[:, 1]) * (ys[:, 0] - ys[:, 2])
    ok = (x1 >= x0) & (y1 >= y0) & (np.abs(det) > 1e-12)
    size = np.maximum(x1 - x0, y1 - y0) + 1
    bucket = np.where(ok, np.ceil(np.log2(np.maximum(size, 1))).astype(np.int64), -1)
    flats, ids, barys = [], [], []
    for level in np.unique(bucket[bucket >= 0]):
        f = np.flatnonzero(bucket == level)
        K = 1 << int(level)
        oy, ox = np.divmod(np.arange(K * K), K)
        gx = x0[f, None] + ox
        gy = y0[f, None] + oy
        X, Y = xs[f], ys[f]
        d = det[f, None]
        l0 = ((Y[:, 1:2] - Y[:, 2:3]) * (gx - X[:, 2:3]) + (X[:, 2:3] - X[:, 1:2]) * (gy - Y[:, 2:3])) / d
        l1 = ((Y[:, 2:3] - Y[:, 0:1]) * (gx - X[:, 2:3]) + (X[:, 0:1] - X[:, 2:3]) * (gy - Y[:, 2:3])) / d
        l2 = 1.0 - l0 - l1
        inside = (gx <= x1[f, None]) & (gy <= y1[f, None]) & (l0 >= -_EPS) & (l1 >= -_EPS) & (l2 >= -_EPS)
        fi, ki = np.nonzero(inside)
        flats.append(gy[fi, ki] * G + gx[fi, ki])
        ids.append(f[fi])
        barys.append(np.stack([l0[fi, ki], l1[fi, ki], l2[fi, ki]], -1))
    if flats:
        flat, fid, bary = np.concatenate(flats), np.concatenate(ids), np.concatenate(barys)
        order = np.lexsort((fid, flat))  # by texel, then by triangle
        flat, fid, bary = flat[order], fid[order], bary[order]
        last = np.append(flat[1:] != flat[:-1], True)  # each texel's highest triangle
        tri_map.reshape(-1)[flat[last]] = fid[last]
        bary_map.reshape(-1, 3)[flat[last]] = bary[last]
    return tri_map, bary_map
